"""Metrics: every generated output scored by ``score_batch`` inside a Spark UDF."""

from collections import Counter

import pyarrow.compute as pc
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset
from dagster_pyspark import PySparkResource

from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    EXAMPLE_METRICS,
    GENERATIONS,
    METRIC_NOTES,
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
    table, stats, seconds, version = done.table, done.stats, done.seconds, done.version
    means = {}
    nulls = {}
    for name in ALL_METRIC_COLUMNS:
        column = table.column(name)
        valid = pc.is_valid(column) if column.null_count else None
        values = column.filter(pc.invert(pc.is_nan(column)))
        if valid is not None:
            values = values.drop_null()
        nulls[name] = table.num_rows - len(values)
        if len(values):
            means[f"mean_{name}"] = float(pc.mean(values).as_py())
    reasons = Counter(
        f"{group}: {reason}"
        for notes in table.column(METRIC_NOTES).to_pylist()
        for group, reason in (notes or [])
    )
    context.log.info(f"{model_id} on {day}: {table.num_rows} rows scored in {seconds:.1f}s")
    return MaterializeResult(
        metadata={
            "rows": table.num_rows,
            **means,
            "null_metrics": MetadataValue.json({k: v for k, v in nulls.items() if v}),
            "null_reasons": MetadataValue.json(dict(reasons)),
            "seconds_per_metric_group": MetadataValue.json(
                {k: round(v, 3) for k, v in stats.seconds_per_group().items()}
            ),
            "scoring_seconds": seconds,
            "metric_config_hash": config.hash,
            "metric_groups": ", ".join(config.groups),
            "delta_version": version,
            "delta_table": MetadataValue.path(str(store.path(EXAMPLE_METRICS))),
            "dagster/row_count": table.num_rows,
            "dagster/column_schema": column_schema(EXAMPLE_METRICS),
        }
    )
