"""Generation: each registered model's outputs for a day's examples, as a Spark UDF."""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_pyspark import PySparkResource

from llm_eval_pipeline.core.models import ModelSpec, ModelSpecError
from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.defs.assets.ingest import EXAMPLES_KEY
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema, markdown_preview
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, ModelsResource
from llm_eval_pipeline.stages import StageError, generate_partition

GROUP = "generation"
SAMPLE_COLUMNS = [Col.EXAMPLE_ID, Col.OUTPUT, Col.OUTPUT_TOKENS, Col.FINISH_REASON, Col.ERROR]


def partition_of(context: AssetExecutionContext) -> tuple[dt.date, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return dt.date.fromisoformat(keys[Col.EVAL_DATE]), keys[Col.MODEL_ID]


def registered_spec(models: ModelsResource, model_id: str) -> ModelSpec:
    try:
        return models.registry().get(model_id)
    except ModelSpecError as exc:
        raise Failure(
            description=f"{exc}; register it with `llm-eval models add` (a removed model "
            "keeps its history but is not evaluated again)"
        ) from exc


@asset(
    key=GENERATIONS.name,
    deps=[EXAMPLES_KEY],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"spark", "delta", "pytorch"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "Each registered model's output for every example of the day, generated in batches "
        "by a Spark mapInPandas UDF (the model loaded once per Python worker, on the GPU "
        "Spark assigns, else the CPU). A failed row keeps its error; the partition fails "
        "only past the configured error rate."
    ),
    metadata={"dagster/column_schema": column_schema(GENERATIONS)},
)
def generations(
    context: AssetExecutionContext,
    models: ModelsResource,
    delta: DeltaStoreResource,
    spark: PySparkResource,
) -> MaterializeResult:
    """Generate one day×model partition and replace it in Delta."""
    day, model_id = partition_of(context)
    spec = registered_spec(models, model_id)

    store = delta.store()
    try:
        done = generate_partition(
            store,
            spark.spark_session,
            spec,
            day,
            max_error_rate=models.max_error_rate,
            partitions=models.partitions,
        )
    except StageError as exc:
        raise Failure(description=str(exc), metadata=exc.metadata) from exc
    stats, seconds, rows, version = done.stats, done.seconds, done.rows, done.version
    output_tokens = done.output_tokens
    for fallback in stats.fallbacks:
        context.log.warning(f"{model_id} on {day}: {fallback}")
    context.log.info(
        f"{model_id} on {day}: {rows} rows, {done.errors} errors, {output_tokens} tokens "
        f"in {seconds:.1f}s on {', '.join(stats.devices) or 'no task'}; "
        f"{stats.model_loads} model loads in {stats.python_workers} Python workers"
    )
    return MaterializeResult(
        metadata={
            "rows": rows,
            "errors": done.errors,
            "error_rate": done.error_rate,
            "output_tokens": output_tokens,
            "tokens_per_second": output_tokens / seconds if seconds else 0.0,
            "generation_seconds": seconds,
            "device": ", ".join(stats.devices),
            "gpu_addresses": ", ".join(stats.gpu_addresses) or "none assigned",
            "gpu_fallback": "; ".join(stats.fallbacks) or "none",
            "model_loads": stats.model_loads,
            "model_load_seconds": stats.load_seconds,
            "python_workers": stats.python_workers,
            "spark_tasks": stats.tasks,
            "backend": spec.backend,
            "generation_config_hash": spec.generation_config_hash,
            "delta_version": version,
            "delta_table": MetadataValue.path(str(store.path(GENERATIONS))),
            "dagster/row_count": rows,
            "dagster/column_schema": column_schema(GENERATIONS),
            "sample": markdown_preview(done.sample, SAMPLE_COLUMNS),
        }
    )
