"""Reporting: one MLflow run per day×model, and the dashboard page over all of them."""

import datetime as dt
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_eval_pipeline.core.schema import (
    INPUT_DRIFT,
    METRIC_AGGREGATES,
    METRIC_SLICES,
    Col,
)
from llm_eval_pipeline.defs.assets.generation import partition_of, registered_spec
from llm_eval_pipeline.defs.automation import after_any_upstream_update, after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import (
    DeltaStoreResource,
    MetricsResource,
    ModelsResource,
    TrackingResource,
)
from llm_eval_pipeline.stages import (
    StageError,
    example_metrics_frame,
    example_table,
    log_day_model,
    ranking_columns,
    ranking_rows,
    release_memory,
)
from llm_eval_pipeline.tracking.dashboard import render_dashboard
from llm_eval_pipeline.tracking.dashboard_data import (
    WORST_N,
    DashboardData,
    digest_examples,
)
from llm_eval_pipeline.tracking.mlflow_runs import (
    TrackingUnavailable,
    log_dashboard,
    run_url,
)

GROUP = "reporting"
MLFLOW_RUNS_KEY = "mlflow_eval_runs"
DASHBOARD_KEY = "eval_dashboard"
DASHBOARD_FILE = "index.html"
DASHBOARD_DATASET = "all"


def code_version() -> str:
    try:
        return version("llm_eval_pipeline")
    except PackageNotFoundError:
        return "unknown"


@asset(
    key=MLFLOW_RUNS_KEY,
    deps=[METRIC_AGGREGATES.name, METRIC_SLICES.name],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"mlflow"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "One MLflow run per day×model in the dataset's experiment, found again by its tags "
        "(llm_eval.model_id, llm_eval.eval_date, llm_eval.dataset) so that a re-run updates "
        "it: the model spec and configs as params, every aggregate and its CI as metrics, "
        "the per-example table (mlflow log_table format) and distribution charts; the "
        "slice table, the slice metrics with a verdict other than no_change, and a tag "
        "naming the regressed slices; the eval set as the run's input dataset (a Delta "
        "source with its version)."
    ),
)
def mlflow_eval_runs(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
    tracking: TrackingResource,
) -> MaterializeResult:
    """Log one day×model partition to MLflow."""
    day, model_id = partition_of(context)
    spec = registered_spec(models, model_id)
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.partition_key": str(context.partition_key),
        "llm_eval.code_version": code_version(),
    }
    try:
        done = log_day_model(
            delta.store(),
            spec,
            metrics.config(),
            day,
            tracking_uri=tracking.tracking_uri,
            tags=tags,
            artifact_location=tracking.artifact_location,
            retries=tracking.retries,
            backoff_s=tracking.backoff_s,
        )
    except TrackingUnavailable as exc:
        raise Failure(
            description=f"{exc}. The Delta tables are written and unaffected; materialize "
            f"{MLFLOW_RUNS_KEY} again once MLflow is reachable."
        ) from exc
    except StageError as exc:
        raise Failure(description=str(exc)) from exc
    logged, dataset = done.run, done.dataset
    where = run_url(tracking.tracking_uri, logged)
    context.log.info(f"{model_id} on {day}: MLflow run {logged.run_id} ({where})")
    return MaterializeResult(
        metadata={
            "mlflow_run_id": logged.run_id,
            "mlflow_experiment_id": logged.experiment_id,
            "mlflow_run": MetadataValue.url(where)
            if where and where.startswith("http")
            else MetadataValue.text(where or logged.run_id),
            "created": logged.created,
            "tracking_uri": tracking.tracking_uri,
            "dataset": dataset,
        }
    )


@asset(
    key=DASHBOARD_KEY,
    deps=[METRIC_AGGREGATES.name, METRIC_SLICES.name, INPUT_DRIFT.name],
    automation_condition=after_any_upstream_update,
    kinds={"html", "mlflow"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "A self-contained interactive HTML page (Vega-Lite charts inlined; opens from disk, "
        "no network): controls for models, date range, metric, slice and day; each metric "
        "over the days with its CI band and the baseline's regressions marked; the chosen "
        "model against the baseline (paired differences per metric and slice, win/tie/loss "
        "on examples, a metric × slice heat map); input drift; cost and speed; the latest "
        f"day's leaderboard; the {WORST_N} worst examples per model and day, searchable. "
        "Refreshed whenever new aggregates, slices or drift land; also logged to MLflow."
    ),
)
def eval_dashboard(
    context: AssetExecutionContext,
    models: ModelsResource,
    delta: DeltaStoreResource,
    tracking: TrackingResource,
) -> MaterializeResult:
    """Render the dashboard from the aggregates, slices and drift tables, and each
    day×model's worst examples and win/tie/loss counts (read one day×model at a time)."""
    store = delta.store()
    aggregates = store.read_arrow(METRIC_AGGREGATES).to_pandas()
    baseline_spec = models.registry().baseline()
    baseline = baseline_spec.name if baseline_spec else None
    partitions = [
        (day, sorted(set(rows[Col.MODEL_ID].astype(str))))
        for day, rows in aggregates.groupby(Col.EVAL_DATE, sort=True)
    ]
    # metrics of every example (of the candidates only, when no model is compared with
    # another that day), then the text of each day×model's worst ones only
    worst, outcomes = digest_examples(
        partitions,
        lambda day, model: (
            example_metrics_frame(store, day, model, ranking_columns(store, day, model, True))
            if baseline in dict(partitions)[day] and len(dict(partitions)[day]) > 1
            else ranking_rows(store, day, model, WORST_N)
        ),
        baseline,
        rows_of=lambda day, model, ids: example_table(store, day, model, ids=ids),
    )
    release_memory()
    data = DashboardData(
        aggregates=aggregates,
        slices=store.read_arrow(METRIC_SLICES).to_pandas(),
        drift=store.read_arrow(INPUT_DRIFT).to_pandas(),
        examples=worst,
        outcomes=outcomes,
        baseline=baseline,
    )
    html = render_dashboard(
        data,
        title="LLM evaluation",
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    folder = Path(tracking.dashboard_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DASHBOARD_FILE
    partial = path.with_suffix(".html.tmp")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    try:
        logged = log_dashboard(
            tracking.tracking_uri,
            DASHBOARD_DATASET,
            path,
            artifact_location=tracking.artifact_location,
            retries=tracking.retries,
            backoff_s=tracking.backoff_s,
        )
    except TrackingUnavailable as exc:
        raise Failure(description=f"{exc}. The dashboard is written at {path}.") from exc
    days = [day for day, _ in partitions]
    context.log.info(f"dashboard written to {path}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "open": MetadataValue.url(path.as_uri()),
            "mlflow_run_id": logged.run_id,
            "models": MetadataValue.json(sorted({m for _, names in partitions for m in names})),
            "days": len(days),
            "latest_day": str(days[-1]) if days else "",
        }
    )
