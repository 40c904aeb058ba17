"""One MLflow run per (dataset, model, day), found again by tags, so re-logging updates it.

Each dataset has an experiment, ``experiment_name(dataset)``. Its evaluation runs carry the
tags ``TAG_DATASET``, ``TAG_MODEL``, ``TAG_DATE`` and ``TAG_KIND = "eval"``; a search on
them finds the run of a key again. There is one live run per key: a re-log with the same
params and metric values fills in what is missing and replaces the artifacts; a re-run
whose params or metric values changed replaces the run (MLflow params are immutable, and
a second metric value at the same step and timestamp would make MLflow's "latest" value
the larger one, not the newer). The old run stays in MLflow's trash (``delete_run``).

Metrics are logged at step 0 with the day's midnight (UTC) as timestamp and only when the
run lacks them, so re-logging never grows a metric's history, whatever the store.

Every public function retries the whole (idempotent) sequence of MLflow calls on
transient failures and then raises ``TrackingUnavailable``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunTag, ViewType
from mlflow.exceptions import MlflowException, RestException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_LOGGED_ARTIFACTS
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.file_lock import exclusive
from llm_eval_pipeline.core.schema import METRIC_COLUMNS, PRIMARY_METRICS, Agg, Slc
from llm_eval_pipeline.core.slices import slice_name

TAG_DATASET = "llm_eval.dataset"
TAG_MODEL = "llm_eval.model_id"
TAG_DATE = "llm_eval.eval_date"
TAG_KIND = "llm_eval.kind"
EXAMPLES_ARTIFACT = "examples.json"
SLICES_ARTIFACT = "slices.json"
TAG_REGRESSED_SLICES = "llm_eval.regressed_slices"
SLICE_METRIC_PREFIX = "slice"
_TAG_CHARS = 5000
_NAME_PART_CHARS = 60
DASHBOARD_ARTIFACT = "dashboard.html"
# MLflow's UI opens an experiment of this kind on its runs table, not on the GenAI views.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_EVALUATION = "custom_model_development"

CHART_METRICS: frozenset[str] = frozenset(PRIMARY_METRICS)
"""Metrics whose per-example distribution is charted (one PNG per metric group)."""

_STATS = (Agg.MEAN, Agg.CI_LOW, Agg.CI_HIGH, Agg.STD, Agg.P50, Agg.P90, Agg.P95, Agg.COUNT)
_SECRET_KEY = re.compile(
    r"(?:^|[._-])(?:api[._-]?key|access[._-]?key|private[._-]?key|token|password|passwd"
    r"|secrets?|credentials?|auth|authorization)(?:$|[._-])",
    re.IGNORECASE,
)
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


@dataclass(frozen=True)
class RunKey:
    """What one evaluation run stands for."""

    dataset: str
    model_id: str
    eval_date: datetime.date


@dataclass(frozen=True)
class EvalInput:
    """The eval set a run used, for MLflow's dataset lineage: its rows (MLflow records
    their digest and schema), the dataset's name, and the Delta table and version they
    were read from."""

    rows: pd.DataFrame
    name: str
    delta_path: str
    delta_version: int


@dataclass(frozen=True)
class LoggedRun:
    """The run logged to; ``created`` is False when an existing run was found and updated."""

    run_id: str
    experiment_id: str
    created: bool


class TrackingUnavailable(UserError, RuntimeError):
    """MLflow could not be reached after all attempts."""


def experiment_name(dataset: str) -> str:
    """The experiment holding a dataset's runs."""
    return f"llm-eval-{dataset}"


def log_eval_run(
    tracking_uri: str,
    key: RunKey,
    *,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    aggregates: pd.DataFrame,
    examples: pd.DataFrame,
    slices: pd.DataFrame | None = None,
    eval_input: EvalInput | None = None,
    artifact_location: str | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> LoggedRun:
    """Log one partition's evaluation: params (secret-looking keys dropped), tags, for each
    ``aggregates`` row the metrics ``<metric>`` (the mean) and ``<metric>.<stat>`` for
    ci_low, ci_high, std, p50, p90, p95 and count (NaN and infinite values skipped), the
    per-example table as ``examples.json`` (MLflow's table format, so ``load_table`` and
    the UI read it) and one histogram PNG per metric group under ``charts/``.

    With ``slices`` (the partition's ``metric_slices`` rows): the whole table as
    ``slices.json``; for each tested slice × metric with a verdict other than ``no_change``, the
    metrics ``slice/<key>/<value>/<metric>`` (its mean) with ``.diff`` and ``.q_value``;
    and the tag ``llm_eval.regressed_slices`` naming the regressed ones (``metric
    (key=value)``, comma-separated) or ``none``.

    With ``eval_input``: the eval set as the run's input dataset (context
    ``evaluation``), its source the Delta table's path and version, so MLflow's Dataset
    column and lineage show which version of the eval set the run scored.

    ``artifact_location`` is used when the experiment is created; by default a sqlite
    store keeps artifacts in ``mlartifacts/`` next to its database file.
    """
    safe_params = _without_secrets(params)
    metrics = _metrics(aggregates, key.eval_date)
    if slices is not None:
        metrics += _slice_metrics(slices, key.eval_date)
        tags = {**tags, TAG_REGRESSED_SLICES: regressed_slices(slices)}
    key_tags = {
        TAG_DATASET: key.dataset,
        TAG_MODEL: key.model_id,
        TAG_DATE: key.eval_date.isoformat(),
        TAG_KIND: "eval",
    }

    def same_inputs(run: Run) -> bool:
        new_metrics = {m.key: m.value for m in metrics}
        return _agrees(run.data.params, safe_params) and _agrees(run.data.metrics, new_metrics)

    def write(client: MlflowClient, run: Run) -> None:
        new_metrics = [m for m in metrics if m.key not in run.data.metrics]
        new_params = [Param(k, v) for k, v in safe_params.items() if k not in run.data.params]
        run_tags = [RunTag(k, v) for k, v in _without_secrets(tags).items()]
        # MLflow's limits per log_batch call: 1000 metrics, 100 params, 100 tags
        for field, items, size in (
            ("metrics", new_metrics, 1000),
            ("params", new_params, 100),
            ("tags", run_tags, 100),
        ):
            for start in range(0, len(items), size):
                client.log_batch(run.info.run_id, **{field: items[start : start + size]})
        _log_table(client, run, examples, EXAMPLES_ARTIFACT)
        if slices is not None:
            _log_table(client, run, slices, SLICES_ARTIFACT)
        if eval_input is not None:
            _log_input(client, run, eval_input)
        _log_charts(client, run.info.run_id, examples)

    target = _Target(tracking_uri, key.dataset, artifact_location, retries, backoff_s)
    return target.log(key_tags, f"{key.model_id} {key.eval_date}", same_inputs, write)


def log_dashboard(
    tracking_uri: str,
    dataset: str,
    html_path: Path,
    *,
    artifact_location: str | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> LoggedRun:
    """Log ``html_path`` as ``dashboard.html`` of the dataset's one dashboard run (tag
    ``llm_eval.kind=dashboard``), replacing the previous file."""
    html = Path(html_path).read_bytes()

    def write(client: MlflowClient, run: Run) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / DASHBOARD_ARTIFACT).write_bytes(html)
            client.log_artifact(run.info.run_id, str(Path(tmp) / DASHBOARD_ARTIFACT))

    target = _Target(tracking_uri, dataset, artifact_location, retries, backoff_s)
    key_tags = {TAG_DATASET: dataset, TAG_KIND: "dashboard"}
    return target.log(key_tags, f"dashboard {dataset}", lambda _: True, write)


def run_url(tracking_uri: str, logged: LoggedRun) -> str | None:
    """The run's page: a full URL for an http(s) tracking server (credentials removed),
    else the ``#/experiments/<id>/runs/<id>`` fragment to append to an MLflow UI's base
    URL (``mlflow ui --backend-store-uri <tracking_uri>``); None for Databricks."""
    fragment = f"#/experiments/{logged.experiment_id}/runs/{logged.run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{_redacted(tracking_uri).rstrip('/')}/{fragment}"
    return None if tracking_uri.startswith("databricks") else fragment


def open_client(tracking_uri: str) -> MlflowClient:
    """A client whose store is ready to use.

    MLflow creates a new sqlite store's schema when the first client opens it; two
    processes doing that at once collide ("duplicate column name"), so for sqlite the
    client is opened under a lock file beside the database."""
    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=tracking_uri)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    with exclusive(database.with_name(database.name + ".lock")):
        return MlflowClient(tracking_uri=tracking_uri)


@dataclass(frozen=True)
class _Target:
    """Where to log: the tracking store, the dataset's experiment, and how to retry."""

    tracking_uri: str
    dataset: str
    artifact_location: str | None
    retries: int
    backoff_s: float

    def log(
        self,
        key_tags: dict[str, str],
        run_name: str,
        reusable: Callable[[Run], bool],
        write: Callable[[MlflowClient, Run], None],
    ) -> LoggedRun:
        """Find or create the key's run, ``write`` to it and mark it finished; the whole
        sequence is retried on transient failures."""
        for attempt in range(self.retries + 1):
            try:
                client = open_client(self.tracking_uri)
                experiment_id = self._experiment_id(client)
                run, created = self._live_run(client, experiment_id, key_tags, run_name, reusable)
                write(client, run)
                client.set_terminated(run.info.run_id)
                return LoggedRun(run.info.run_id, experiment_id, created)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                last = exc
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise TrackingUnavailable(
            f"MLflow tracking at {_redacted(self.tracking_uri)} unavailable after "
            f"{self.retries + 1} attempt(s); last error: {last}"
        ) from last

    def _experiment_id(self, client: MlflowClient) -> str:
        name = experiment_name(self.dataset)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = self.artifact_location
            if location is None and self.tracking_uri.startswith("sqlite:///"):
                database = Path(self.tracking_uri.removeprefix("sqlite:///")).resolve()
                location = (database.parent / "mlartifacts").as_uri()
            try:
                return client.create_experiment(
                    name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_EVALUATION}
                )
            except MlflowException as exc:  # created meanwhile by a concurrent partition
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    @staticmethod
    def _live_run(
        client: MlflowClient,
        experiment_id: str,
        key_tags: dict[str, str],
        run_name: str,
        reusable: Callable[[Run], bool],
    ) -> tuple[Run, bool]:
        """The key's newest live run if ``reusable``, else a new one; any other live run of
        the key is deleted."""
        runs = client.search_runs(
            [experiment_id],
            " and ".join(f"tags.`{k}` = {v!r}" for k, v in key_tags.items()),
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time DESC"],
        )
        keep = runs[0] if runs and reusable(runs[0]) else None
        for run in runs:
            if run is not keep:
                client.delete_run(run.info.run_id)
        if keep is not None:
            return keep, False
        return client.create_run(experiment_id, tags=key_tags, run_name=run_name), True


def _is_transient(exc: BaseException) -> bool:
    """Connection-type failures: an OSError (requests' errors are OSErrors) anywhere in the
    cause chain, a locked or unavailable store, or an HTTP 5xx answer of the server."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        if isinstance(seen, MlflowException):
            if seen.error_code in _TRANSIENT_CODES:
                return True
            from_http = isinstance(seen, RestException) or str(seen).startswith("API request")
            if from_http and seen.get_http_status_code() >= 500:
                return True
        seen = seen.__cause__ or seen.__context__
    return False


def _redacted(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}{port}"))


def _without_secrets(values: Mapping[str, object]) -> dict[str, str]:
    """Values as strings, cut to MLflow's length limit as MLflow would (so a re-log compares
    equal), secret-looking keys dropped."""
    return {
        k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in values.items() if not _SECRET_KEY.search(k)
    }


def _agrees(logged: Mapping[str, object], new: Mapping[str, object]) -> bool:
    """True when every value already logged is also in ``new``, unchanged."""
    return all(k in new and new[k] == v for k, v in logged.items())


def _midnight_ms(day: datetime.date) -> int:
    """The day's midnight (UTC) in milliseconds: every metric of a day's run is logged at it."""
    midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
    return int(midnight.timestamp() * 1000)


def _finite(value: object) -> bool:
    return value is not None and not pd.isna(value) and math.isfinite(value)  # type: ignore[arg-type]


def _metrics(aggregates: pd.DataFrame, day: datetime.date) -> list[Metric]:
    timestamp, metrics = _midnight_ms(day), []
    for row in aggregates.to_dict("records"):
        for stat in _STATS:
            value = row.get(stat)
            if not _finite(value):
                continue
            name = row[Agg.METRIC] if stat == Agg.MEAN else f"{row[Agg.METRIC]}.{stat}"
            metrics.append(Metric(name, float(value), timestamp, 0))
    return metrics


def _log_table(client: MlflowClient, run: Run, table: pd.DataFrame, name: str) -> None:
    """What ``MlflowClient.log_table`` writes (pandas "split" JSON plus the
    ``mlflow.loggedArtifacts`` tag), except that log_table appends to an existing table and
    this replaces it, so a re-log does not double the rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        table.to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run.info.run_id, str(path))
    # re-read: a first table of this write may have set the tag already
    current = client.get_run(run.info.run_id).data.tags
    logged = json.loads(current.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": name, "type": "table"}
    if entry not in logged:
        client.set_tag(run.info.run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))


def _log_input(client: MlflowClient, run: Run, data: EvalInput) -> None:
    """The eval set as the run's input; MLflow keeps one input per dataset name and digest
    (of the rows), so a re-log of the same rows adds nothing."""
    import mlflow.data
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    source = DeltaDatasetSource(path=data.delta_path, delta_table_version=data.delta_version)
    # The digest is of the rows alone: the table's version moves with every other day's
    # ingestion, and a re-log of unchanged rows must not attach a second input. MLflow
    # keys datasets by name and digest, so the same rows keep the source (version) they
    # were first logged with; the run's llm_eval.dataset_version tag is always current.
    dataset = mlflow.data.from_pandas(data.rows, source=source, name=data.name)
    context = InputTag(MLFLOW_DATASET_CONTEXT, "evaluation")
    # the client takes entities; _to_mlflow_entity is how mlflow.log_input makes one
    client.log_inputs(run.info.run_id, [DatasetInput(dataset._to_mlflow_entity(), [context])])


def _slice_metrics(slices: pd.DataFrame, day: datetime.date) -> list[Metric]:
    timestamp, metrics = _midnight_ms(day), []
    # tested slices only: an untested one (under min_slice_size) is inconclusive by rule,
    # and a field with many small values would flood the run with metrics
    tested = slices[Slc.P_VALUE].notna() & slices[Slc.VERDICT].notna()
    shown = slices[tested & (slices[Slc.VERDICT] != Verdict.NO_CHANGE)]
    for row in shown.to_dict("records"):
        name = "/".join(
            [SLICE_METRIC_PREFIX, *(_metric_name_part(row[c]) for c in (Slc.KEY, Slc.VALUE)),
             row[Agg.METRIC]]
        )  # fmt: skip
        for suffix, column in (("", Agg.MEAN), (".diff", Slc.DIFF), (".q_value", Slc.Q_VALUE)):
            if _finite(row[column]):
                metrics.append(Metric(name + suffix, float(row[column]), timestamp, 0))
    return metrics


def regressed_slices(slices: pd.DataFrame) -> str:
    """``metric (key=value), ...`` of the slices whose verdict is a regression, or
    ``none``; cut to fit an MLflow tag."""
    found = slices[slices[Slc.VERDICT] == Verdict.REGRESSION]
    names = [
        f"{m} ({slice_name(k, v)})"
        for m, k, v in zip(found[Agg.METRIC], found[Slc.KEY], found[Slc.VALUE], strict=True)
    ]
    text = ", ".join(names) or "none"
    return text if len(text) <= _TAG_CHARS else text[: _TAG_CHARS - 3] + "..."


def _metric_name_part(value: object) -> str:
    """A slice key or value as a part of an MLflow metric name: as it is when MLflow
    accepts it (letters, digits, ``_-. :``, not ``.`` or ``..``, at most
    ``_NAME_PART_CHARS``); otherwise its accepted characters, cut to fit, and a hash of
    the whole, so that two values never share a name (``a/b`` and ``a_b`` would)."""
    text = str(value)
    if (
        re.fullmatch(r"[\w\-. :]+", text)
        and text not in (".", "..")
        and (len(text) <= _NAME_PART_CHARS)
    ):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    kept = re.sub(r"[^\w\-. :]", "_", text)[: _NAME_PART_CHARS - 9]
    return f"{kept}-{digest}"


def _log_charts(client: MlflowClient, run_id: str, examples: pd.DataFrame) -> None:
    """One PNG of histograms per metric group, for the charted metrics with values."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    for group, columns in METRIC_COLUMNS.items():
        series = {}
        for column in columns:
            if column in CHART_METRICS and column in examples:
                values = pd.to_numeric(examples[column], errors="coerce").to_numpy(float)
                if np.isfinite(values).any():
                    series[column] = values[np.isfinite(values)]
        if not series:
            continue
        figure = Figure(figsize=(2.8 * len(series), 2.4), dpi=80, layout="constrained")
        for axes, (column, values) in zip(
            figure.subplots(1, len(series), squeeze=False)[0], series.items(), strict=True
        ):
            axes.hist(values, bins=20)
            axes.set_title(f"{column} (n={len(values)})", fontsize=9)
        client.log_figure(run_id, figure, f"charts/{group}.png")
