"""Where a model changed: ``metric_slices``, every metric on every slice of a day×model,
compared with the baseline on the same examples (``core.slices``)."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.schema import EXAMPLE_METRICS, METRIC_SLICES, Agg, Slc
from llm_eval_pipeline.defs.assets.generation import partition_of
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource, ModelsResource
from llm_eval_pipeline.stages import slice_day_model

GROUP = "reporting"
SHOWN_VERDICTS = (Verdict.REGRESSION, Verdict.IMPROVEMENT)


@asset(
    key=METRIC_SLICES.name,
    deps=[EXAMPLE_METRICS.name],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"delta", "pandas"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "Every metric on every slice of the day×model (all; task and the slice_by metadata "
        "fields; prompt length tercile; recurring vs new examples): mean and 95% bootstrap "
        "interval, and against the baseline on the same examples the paired difference, "
        "its interval, p- and Benjamini-Hochberg q-value, minimum detectable effect, "
        "examples needed for the margin, and a verdict."
    ),
    metadata={"dagster/column_schema": column_schema(METRIC_SLICES)},
)
def metric_slices(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
) -> MaterializeResult:
    """Slice one day×model partition, compare it with the baseline, replace it in Delta."""
    day, model_id = partition_of(context)
    baseline = models.registry().baseline()
    store = delta.store()
    done = slice_day_model(
        store,
        day,
        model_id,
        baseline=baseline.name if baseline and baseline.name != model_id else None,
        slice_by=tuple(metrics.slices.slice_by),
        min_slice_size=metrics.slices.min_slice_size,
        relative_margin=metrics.regression.margin,
        resamples=metrics.bootstrap.resamples,
        seed=metrics.bootstrap.seed,
    )
    table = done.table
    notable = table[table[Slc.VERDICT].isin(SHOWN_VERDICTS)]
    context.log.info(
        f"{model_id} on {day}: {len(table)} slice × metric rows, "
        f"{len(notable)} with a regression or improvement"
    )
    return MaterializeResult(
        metadata={
            "rows": len(table),
            "slices": int(table[[Slc.KEY, Slc.VALUE]].drop_duplicates().shape[0]),
            "baseline": done.baseline or "none",
            "verdicts": MetadataValue.json(
                {str(k): int(v) for k, v in table[Slc.VERDICT].value_counts().items()}
            ),
            "regressions_and_improvements": MetadataValue.md(_markdown(notable)),
            "delta_version": done.version,
            "delta_table": MetadataValue.path(str(store.path(METRIC_SLICES))),
            "dagster/row_count": len(table),
        }
    )


def _markdown(rows: pd.DataFrame) -> str:
    lines = [
        "| slice | metric | mean | baseline | difference [95% CI] | q | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows.to_dict("records"):
        lines.append(
            f"| {r[Slc.KEY]}={r[Slc.VALUE]} | {r[Agg.METRIC]} | {r[Agg.MEAN]:.4f} | "
            f"{r[Slc.BASELINE_MEAN]:.4f} | {r[Slc.DIFF]:+.4f} [{r[Slc.DIFF_CI_LOW]:+.4f}, "
            f"{r[Slc.DIFF_CI_HIGH]:+.4f}] | {r[Slc.Q_VALUE]:.3g} | {r[Slc.VERDICT]} |"
        )
    return "\n".join(lines)
