"""Metrics: every generated output scored by ``score_batch`` inside a Spark UDF."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset
from dagster_pyspark import PySparkResource

from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GENERATIONS,
)
from llm_eval_pipeline.defs.assets.generation import partition_of, registered_spec
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource, ModelsResource
from llm_eval_pipeline.stages import score_partition

GROUP = "metrics"


@asset(
    key=EXAMPLE_METRICS.name,
    deps=[GENERATIONS.name],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"spark", "delta", "pytorch"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "Every output's metrics (ROUGE, answer correctness, perplexity, hallucination "
        "index, optionally an LLM judge), computed by core.scoring.score_batch in a Spark "
        "mapInPandas UDF over the day's generations joined with their examples."
    ),
    metadata={"dagster/column_schema": column_schema(EXAMPLE_METRICS)},
)
def example_metrics(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
    spark: PySparkResource,
) -> MaterializeResult:
    """Score one day×model partition and replace it in Delta."""
    day, model_id = partition_of(context)
    spec = registered_spec(models, model_id)
    config = metrics.config()
    store = delta.store()
    done = score_partition(
        store, spark.spark_session, spec, config, day, partitions=metrics.partitions
    )
    stats, seconds, version = done.stats, done.seconds, done.version
    context.log.info(f"{model_id} on {day}: {done.rows} rows scored in {seconds:.1f}s")
    return MaterializeResult(
        metadata={
            "rows": done.rows,
            **{f"mean_{name}": mean for name, mean in done.means.items()},
            "null_metrics": MetadataValue.json({k: v for k, v in done.nulls.items() if v}),
            "null_reasons": MetadataValue.json(done.null_reasons),
            "seconds_per_metric_group": MetadataValue.json(
                {k: round(v, 3) for k, v in stats.seconds_per_group().items()}
            ),
            "scoring_seconds": seconds,
            "metric_config_hash": config.hash,
            "metric_groups": ", ".join(config.groups),
            "delta_version": version,
            "delta_table": MetadataValue.path(str(store.path(EXAMPLE_METRICS))),
            "dagster/row_count": done.rows,
            "dagster/column_schema": column_schema(EXAMPLE_METRICS),
        }
    )
