"""log_eval_run and log_dashboard against a real MLflow sqlite store."""

from __future__ import annotations

import datetime
import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from llm_eval_pipeline.core.schema import ALL_METRIC_COLUMNS, Agg, Col
from llm_eval_pipeline.tracking.mlflow_runs import (
    CHART_METRICS,
    TAG_DATASET,
    TAG_DATE,
    TAG_KIND,
    TAG_MODEL,
    LoggedRun,
    RunKey,
    TrackingUnavailable,
    _is_transient,
    experiment_name,
    log_dashboard,
    log_eval_run,
    run_url,
)

DAY = datetime.date(2024, 5, 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """One sqlite store for the module (migrations are slow); tests use distinct datasets."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db", (root / "mlartifacts").as_uri()


def aggregates(shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            Agg.METRIC: ["rouge1", "exact_match", "judge_correctness"],
            Agg.COUNT: [4, 4, 0],
            Agg.MEAN: [0.5 + shift, 0.25, np.nan],
            Agg.STD: [0.1, 0.5, np.nan],
            Agg.P50: [0.5, 0.0, np.nan],
            Agg.P90: [0.7, 0.7, np.nan],
            Agg.CI_LOW: [0.4, 0.0, np.nan],
            Agg.CI_HIGH: [0.6, 0.75, np.nan],
            Agg.ROWS: [4, 4, 4],
        }
    )


def examples() -> pd.DataFrame:
    return pd.DataFrame(
        {
            Col.EXAMPLE_ID: ["a", "b", "c", "d"],
            Col.PROMPT: ["q1", "q2", "q3", "q4"],
            Col.REFERENCES: [np.array(["r1"]), np.array(["r2", "r2b"]), ["r3"], ["r4"]],
            Col.OUTPUT: ["o1", "o2", None, "o4"],
            "rouge1": [0.4, 0.5, 0.6, 0.5],
            "exact_match": [0.0, 1.0, 0.0, 0.0],
            "judge_correctness": [np.nan] * 4,
        }
    )


PARAMS = {"model.name": "tiny-gpt", "generation.max_tokens": "32", "metric_config_hash": "h1"}


def log(store: tuple[str, str], key: RunKey, params: dict = PARAMS, shift: float = 0.0):
    uri, artifacts = store
    return log_eval_run(
        uri,
        key,
        params=params,
        tags={"dagster.run_id": "r-1"},
        aggregates=aggregates(shift),
        examples=examples(),
        artifact_location=artifacts,
    )


def live_runs(uri: str, logged: LoggedRun) -> list:
    client = MlflowClient(tracking_uri=uri)
    return client.search_runs([logged.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)


def test_relogging_the_same_key_updates_the_same_run(store: tuple[str, str]) -> None:
    uri = store[0]
    key = RunKey("relog", "tiny-gpt", DAY)
    first, second = log(store, key), log(store, key)

    assert first.created and not second.created
    assert second.run_id == first.run_id
    assert [r.info.run_id for r in live_runs(uri, second)] == [first.run_id]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(first.run_id)
    assert run.info.run_name == "tiny-gpt 2024-05-01"
    assert run.info.status == "FINISHED"
    assert client.get_experiment(first.experiment_id).name == experiment_name("relog")
    assert run.data.params == PARAMS
    assert run.data.tags[TAG_DATASET] == "relog"
    assert run.data.tags[TAG_MODEL] == "tiny-gpt"
    assert run.data.tags[TAG_DATE] == "2024-05-01"
    assert run.data.tags[TAG_KIND] == "eval"
    assert run.data.tags["dagster.run_id"] == "r-1"
    assert run.data.metrics == {
        "rouge1": 0.5,
        "rouge1.count": 4.0,
        "rouge1.std": 0.1,
        "rouge1.p50": 0.5,
        "rouge1.p90": 0.7,
        "rouge1.ci_low": 0.4,
        "rouge1.ci_high": 0.6,
        "exact_match": 0.25,
        "exact_match.count": 4.0,
        "exact_match.std": 0.5,
        "exact_match.p50": 0.0,
        "exact_match.p90": 0.7,
        "exact_match.ci_low": 0.0,
        "exact_match.ci_high": 0.75,
        "judge_correctness.count": 0.0,
    }
    history = client.get_metric_history(first.run_id, "rouge1")
    assert [(m.value, m.step, m.timestamp) for m in history] == [(0.5, 0, 1714521600000)]


def test_examples_table_and_charts_are_artifacts(store: tuple[str, str]) -> None:
    uri = store[0]
    key = RunKey("artifacts", "tiny-gpt", DAY)
    log(store, key)
    logged = log(store, key)

    client = MlflowClient(tracking_uri=uri)
    assert logged.run_id in client.get_run(logged.run_id).info.artifact_uri
    assert client.get_run(logged.run_id).info.artifact_uri.startswith(store[1])
    top = {a.path for a in client.list_artifacts(logged.run_id)}
    assert {"examples.json", "charts"} <= top
    charts = {a.path for a in client.list_artifacts(logged.run_id, "charts")}
    # judge_correctness is all null: no judge chart
    assert charts == {"charts/rouge.png", "charts/correctness.png"}
    png = Path(client.download_artifacts(logged.run_id, "charts/rouge.png"))
    assert png.read_bytes().startswith(b"\x89PNG")

    # MlflowClient.load_table searches runs with the global tracking URI, not the client's,
    # so the table is read as load_table reads it.
    table = pd.read_json(client.download_artifacts(logged.run_id, "examples.json"), orient="split")
    assert table[Col.EXAMPLE_ID].tolist() == ["a", "b", "c", "d"]  # not doubled by the re-log
    assert table[Col.REFERENCES].tolist()[1] == ["r2", "r2b"]
    assert json.loads(client.get_run(logged.run_id).data.tags["mlflow.loggedArtifacts"]) == [
        {"path": "examples.json", "type": "table"}
    ]


@pytest.mark.parametrize(
    ("changed_params", "shift"),
    [({**PARAMS, "metric_config_hash": "h2"}, 0.0), (PARAMS, 0.125)],
    ids=["params", "metric-values"],
)
def test_changed_inputs_replace_the_run(
    store: tuple[str, str], changed_params: dict, shift: float
) -> None:
    uri = store[0]
    key = RunKey(f"replace-{shift}", "tiny-gpt", DAY)
    old = log(store, key)
    new = log(store, key, changed_params, shift)

    assert new.created and new.run_id != old.run_id
    assert [r.info.run_id for r in live_runs(uri, new)] == [new.run_id]
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(old.run_id).info.lifecycle_stage == "deleted"
    run = client.get_run(new.run_id)
    assert run.data.params == changed_params
    assert run.data.metrics["rouge1"] == 0.5 + shift
    assert len(client.get_metric_history(new.run_id, "rouge1")) == 1


def test_secret_looking_params_and_tags_are_dropped(store: tuple[str, str]) -> None:
    uri, artifacts = store
    secrets = {
        "api_key": "sk-1",
        "model.openai.api_key": "sk-2",
        "apiKey": "sk-3",
        "hf_token": "hf-4",
        "db.password": "pw",
        "client_secret": "s",
        "credentials": "c",
    }
    logged = log_eval_run(
        uri,
        RunKey("secrets", "tiny-gpt", DAY),
        params={**PARAMS, **secrets},
        tags={"dagster.run_id": "r-1", "auth.token": "t"},
        aggregates=aggregates(),
        examples=examples(),
        artifact_location=artifacts,
    )
    run = MlflowClient(tracking_uri=uri).get_run(logged.run_id)
    assert run.data.params == PARAMS  # generation.max_tokens is kept
    assert "auth.token" not in run.data.tags


def test_each_model_and_day_has_its_own_run(store: tuple[str, str]) -> None:
    keys = [
        RunKey("keys", "tiny-gpt", DAY),
        RunKey("keys", "tiny-t5", DAY),
        RunKey("keys", "tiny-gpt", DAY + datetime.timedelta(days=1)),
    ]
    logged = [log(store, key) for key in keys]

    assert all(run.created for run in logged)
    assert len({run.run_id for run in logged}) == 3
    assert len({run.experiment_id for run in logged}) == 1
    assert len(live_runs(store[0], logged[0])) == 3


def test_sqlite_artifacts_default_to_mlartifacts_next_to_the_database(
    store: tuple[str, str],
) -> None:
    uri = store[0]
    logged = log_eval_run(
        uri,
        RunKey("default-location", "tiny-gpt", DAY),
        params=PARAMS,
        tags={},
        aggregates=aggregates(),
        examples=examples(),
    )
    database = Path(uri.removeprefix("sqlite:///"))
    artifact_uri = MlflowClient(tracking_uri=uri).get_run(logged.run_id).info.artifact_uri
    assert artifact_uri.startswith((database.parent / "mlartifacts").as_uri())


def test_dashboard_run_is_reused_and_its_artifact_replaced(
    store: tuple[str, str], tmp_path: Path
) -> None:
    uri, artifacts = store
    html = tmp_path / "report.html"
    html.write_text("<html>one</html>")
    first = log_dashboard(uri, "dash", html, artifact_location=artifacts)
    html.write_text("<html>two</html>")
    second = log_dashboard(uri, "dash", html, artifact_location=artifacts)

    assert first.created and not second.created and second.run_id == first.run_id
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(first.run_id)
    assert run.data.tags[TAG_KIND] == "dashboard"
    assert run.data.tags[TAG_DATASET] == "dash"
    assert [a.path for a in client.list_artifacts(first.run_id)] == ["dashboard.html"]
    path = client.download_artifacts(first.run_id, "dashboard.html", str(tmp_path / "dl"))
    assert Path(path).read_text() == "<html>two</html>"
    assert len(live_runs(uri, first)) == 1


def test_missing_dashboard_file_is_not_a_tracking_failure(
    store: tuple[str, str], tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        log_dashboard(store[0], "dash-missing", tmp_path / "none.html", backoff_s=5.0)


def test_quotes_in_a_model_id_still_find_the_run(store: tuple[str, str]) -> None:
    key = RunKey("quotes", "o'brien-7b", DAY)
    first, second = log(store, key), log(store, key)
    assert not second.created and second.run_id == first.run_id


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError("refused"), True),
        (requests.exceptions.ReadTimeout("slow"), True),
        (MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE), True),
        (MlflowException("API request to endpoint /x failed with error code 502 != 200"), True),
        (MlflowException("Changing param values is not allowed", INVALID_PARAMETER_VALUE), False),
        (ValueError("bad"), False),
    ],
)
def test_transient_failures(error: Exception, transient: bool) -> None:
    assert _is_transient(error) is transient


def test_unreachable_server_raises_tracking_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"

    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as raised:
        log_eval_run(
            uri,
            RunKey("down", "tiny-gpt", DAY),
            params=PARAMS,
            tags={},
            aggregates=aggregates(),
            examples=examples(),
            retries=1,
            backoff_s=0.01,
        )
    assert time.monotonic() - started < 10
    assert uri in str(raised.value) and "2 attempt(s)" in str(raised.value)


def test_long_params_are_cut_like_mlflow_does_so_a_relog_reuses_the_run(
    store: tuple[str, str],
) -> None:
    params = {**PARAMS, "prompt_template": "x" * 10_000}
    key = RunKey("long-param", "tiny-gpt", DAY)
    first, second = log(store, key, params), log(store, key, params)
    assert not second.created and second.run_id == first.run_id


def test_invalid_input_is_not_retried(store: tuple[str, str]) -> None:
    started = time.monotonic()
    with pytest.raises(MlflowException) as raised:
        log_eval_run(
            store[0],
            RunKey("invalid", "tiny-gpt", DAY),
            params={"bad!key": "x"},
            tags={},
            aggregates=aggregates(),
            examples=examples(),
            artifact_location=store[1],
            backoff_s=5.0,
        )
    assert not isinstance(raised.value, TrackingUnavailable)
    assert time.monotonic() - started < 5


def test_run_url() -> None:
    logged = LoggedRun("r1", "7", created=True)
    assert (
        run_url("http://u:pw@mlflow:5000/", logged) == "http://mlflow:5000/#/experiments/7/runs/r1"
    )
    assert run_url("sqlite:///x/mlflow.db", logged) == "#/experiments/7/runs/r1"
    assert run_url("databricks", logged) is None


def test_charted_metrics_are_metric_columns() -> None:
    assert set(ALL_METRIC_COLUMNS) >= CHART_METRICS


def test_slices_are_logged_with_names_mlflow_accepts(store: tuple[str, str]) -> None:
    """Metadata values of 300 characters with a slash and a quote, ".", and "a/b" beside
    "a_b": the run is logged, names stay under MLflow's limit and apart."""
    from llm_eval_pipeline.core.schema import Slc

    uri, artifacts = store
    long_value = 'a/"' + "x" * 300
    rows = [
        {Slc.KEY: "source", Slc.VALUE: value, Agg.METRIC: "exact_match", Agg.COUNT: 30,
         Agg.MEAN: 0.1, Slc.DIFF: -0.5, Slc.P_VALUE: 0.01, Slc.Q_VALUE: 0.01,
         Slc.VERDICT: "regression"}
        for value in (long_value, long_value + "y", ".", "a/b", "a_b")
    ] + [
        {Slc.KEY: "all", Slc.VALUE: "all", Agg.METRIC: "exact_match", Agg.COUNT: 60,
         Agg.MEAN: 0.5, Slc.DIFF: 0.0, Slc.P_VALUE: 1.0, Slc.Q_VALUE: 1.0,
         Slc.VERDICT: "no_change"},
        {Slc.KEY: "source", Slc.VALUE: "tiny", Agg.METRIC: "exact_match", Agg.COUNT: 3,
         Agg.MEAN: 0.0, Slc.DIFF: -1.0, Slc.P_VALUE: None, Slc.Q_VALUE: None,
         Slc.VERDICT: "inconclusive"},
    ]  # fmt: skip
    logged = log_eval_run(
        uri, RunKey("long-slices", "m", DAY), params=PARAMS, tags={},
        aggregates=aggregates(), examples=examples(), slices=pd.DataFrame(rows),
        artifact_location=artifacts,
    )  # fmt: skip
    run = MlflowClient(tracking_uri=uri).get_run(logged.run_id)
    names = [k for k in run.data.metrics if k.startswith("slice/")]
    assert len(names) == 15 and all(len(k) <= 250 for k in names)  # 5 slices × 3 values
    assert "slice/source/a_b/exact_match" in names, "an accepted value is kept as it is"
    assert not any(k.startswith("slice/all/") for k in names), "no_change is not logged"
    assert not any(k.startswith("slice/source/tiny/") for k in names), "nor an untested slice"
    assert run.data.tags["llm_eval.regressed_slices"].count("exact_match (source=") == 5


def test_the_eval_set_is_one_input_whatever_the_tables_version(store: tuple[str, str]) -> None:
    """Re-logging after another day's ingestion moved eval_examples' version: the same rows
    stay one input; changed rows are a second dataset."""
    from llm_eval_pipeline.tracking.mlflow_runs import EvalInput

    uri, artifacts = store
    rows = examples()[[Col.EXAMPLE_ID, Col.PROMPT]]

    def log_with(version: int, frame: pd.DataFrame) -> LoggedRun:
        return log_eval_run(
            uri, RunKey("inputs", "m", DAY), params=PARAMS, tags={}, aggregates=aggregates(),
            examples=examples(), eval_input=EvalInput(frame, "inputs", "/delta/eval", version),
            artifact_location=artifacts,
        )  # fmt: skip

    first, again = log_with(3, rows), log_with(4, rows)
    assert first.run_id == again.run_id
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.get_run(first.run_id).inputs.dataset_inputs
    assert found.dataset.source_type == "delta_table" and "/delta/eval" in found.dataset.source
    changed = rows.assign(**{Col.PROMPT: ["q1", "q2", "q3", "new"]})
    log_with(5, changed)
    assert len(client.get_run(first.run_id).inputs.dataset_inputs) == 2
