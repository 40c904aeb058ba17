"""Reporting: one MLflow run per day×model, and the dashboard page over all of them."""

import datetime as dt
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    EVAL_EXAMPLES,
    EXAMPLE_METRICS,
    GENERATIONS,
    METRIC_AGGREGATES,
    Agg,
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
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.tracking.dashboard import render_dashboard, worst_examples
from llm_eval_pipeline.tracking.mlflow_runs import (
    RunKey,
    TrackingUnavailable,
    log_dashboard,
    log_eval_run,
    run_url,
)

GROUP = "reporting"
MLFLOW_RUNS_KEY = "mlflow_eval_runs"
DASHBOARD_KEY = "eval_dashboard"
DASHBOARD_FILE = "index.html"
DASHBOARD_DATASET = "all"
REFERENCE = "reference"


def code_version() -> str:
    try:
        return version("llm_eval_pipeline")
    except PackageNotFoundError:
        return "unknown"


def example_table(store: DeltaStore, day: dt.date, model_id: str) -> pd.DataFrame:
    """Every example of one day×model with its output and metrics: the table MLflow's UI
    browses and the dashboard's worst examples come from."""
    partition = {Col.EVAL_DATE: day, Col.MODEL_ID: model_id}
    examples = store.read_arrow(EVAL_EXAMPLES, {Col.EVAL_DATE: day}).to_pandas()
    generated = store.read_arrow(GENERATIONS, partition).to_pandas()
    scored = store.read_arrow(EXAMPLE_METRICS, partition).to_pandas()
    metric_columns = [c for c in ALL_METRIC_COLUMNS if c in scored and scored[c].notna().any()]
    table = (
        examples[[Col.EXAMPLE_ID, Col.DATASET, Col.TASK, Col.PROMPT, Col.CONTEXT, Col.REFERENCES]]
        .merge(generated[[Col.EXAMPLE_ID, Col.OUTPUT, Col.ERROR]], on=Col.EXAMPLE_ID)
        .merge(scored[[Col.EXAMPLE_ID, *metric_columns]], on=Col.EXAMPLE_ID, how="left")
    )
    references = [list(r) if r is not None else [] for r in table[Col.REFERENCES]]
    table[REFERENCE] = [r[0] if r else None for r in references]
    table[Col.REFERENCES] = [json.dumps(r, ensure_ascii=False) for r in references]
    table[Col.EVAL_DATE] = day
    table[Col.MODEL_ID] = model_id
    return table.sort_values(Col.EXAMPLE_ID, ignore_index=True)


@asset(
    key=MLFLOW_RUNS_KEY,
    deps=[METRIC_AGGREGATES.name],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"mlflow"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "One MLflow run per day×model in the dataset's experiment, found again by its tags "
        "(llm_eval.model_id, llm_eval.eval_date, llm_eval.dataset) so that a re-run updates "
        "it: the model spec and configs as params, every aggregate and its CI as metrics, "
        "the per-example table (mlflow log_table format) and distribution charts."
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
    store = delta.store()
    partition = {Col.EVAL_DATE: day, Col.MODEL_ID: model_id}
    aggregates = store.read_arrow(METRIC_AGGREGATES, partition).to_pandas()
    if aggregates.empty:
        raise Failure(description=f"no metric_aggregates for {model_id} on {day} yet")
    examples = example_table(store, day, model_id)
    dataset = "+".join(sorted(set(examples[Col.DATASET]))) or "empty"
    config = metrics.config()
    spec_dict = spec.to_dict()
    params = {
        "model.backend": spec.backend,
        "model.options": json.dumps(spec_dict["options"], sort_keys=True),
        "model.baseline": str(spec.baseline),
        "generation": json.dumps(spec_dict["generation"], sort_keys=True),
        "generation_config_hash": spec.generation_config_hash,
        "metric_config": json.dumps(config.to_dict(), sort_keys=True, default=str),
        "metric_config_hash": config.hash,
    }
    first = aggregates.iloc[0]
    # Delta versions and the Dagster run change on every re-run; MLflow params cannot.
    tags = {
        "llm_eval.dataset_version": str(first[Agg.EXAMPLES_VERSION]),
        "llm_eval.generations_version": str(first[Agg.GENERATIONS_VERSION]),
        "llm_eval.metrics_version": str(first[Agg.METRICS_VERSION]),
        "dagster.run_id": context.run.run_id,
        "dagster.partition_key": str(context.partition_key),
        "llm_eval.code_version": code_version(),
    }
    try:
        logged = log_eval_run(
            tracking.tracking_uri,
            RunKey(dataset, model_id, day),
            params=params,
            tags=tags,
            aggregates=aggregates,
            examples=examples.drop(columns=[Col.EVAL_DATE]),
            artifact_location=tracking.artifact_location,
            retries=tracking.retries,
            backoff_s=tracking.backoff_s,
        )
    except TrackingUnavailable as exc:
        raise Failure(
            description=f"{exc}. The Delta tables are written and unaffected; materialize "
            f"{MLFLOW_RUNS_KEY} again once MLflow is reachable."
        ) from exc
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
    deps=[METRIC_AGGREGATES.name],
    automation_condition=after_any_upstream_update,
    kinds={"html", "mlflow"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "A self-contained HTML page (no network needed): each metric over the days, one "
        "line and CI band per model; the latest day's leaderboard; the biggest "
        "day-over-day changes; each model's worst examples. Refreshed whenever new "
        "aggregates land; also logged to MLflow."
    ),
)
def eval_dashboard(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
    tracking: TrackingResource,
) -> MaterializeResult:
    """Render the dashboard from the whole gold table and the latest day's examples."""
    store = delta.store()
    aggregates = store.read_arrow(METRIC_AGGREGATES).to_pandas()
    worst = []
    if not aggregates.empty:
        for model_id, rows in aggregates.groupby(Col.MODEL_ID):
            latest = max(rows[Col.EVAL_DATE])
            worst.append(worst_examples(example_table(store, latest, str(model_id))))
    baseline = models.registry().baseline()
    html = render_dashboard(
        aggregates,
        pd.concat(worst, ignore_index=True) if worst else worst_examples(pd.DataFrame()),
        title="LLM evaluation",
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        margin=metrics.regression_margin,
        baseline=baseline.name if baseline else None,
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
    days = sorted(set(aggregates[Col.EVAL_DATE])) if not aggregates.empty else []
    context.log.info(f"dashboard written to {path}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(str(path)),
            "open": MetadataValue.url(path.as_uri()),
            "mlflow_run_id": logged.run_id,
            "models": MetadataValue.json(
                sorted(set(aggregates[Col.MODEL_ID])) if not aggregates.empty else []
            ),
            "days": len(days),
            "latest_day": str(days[-1]) if days else "",
        }
    )
