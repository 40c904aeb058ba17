"""Whether the data moved: ``input_drift``, each day's examples against the previous day
with examples (``core.drift``)."""

import datetime as dt

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from llm_eval_pipeline.core.metrics.embeddings import embed
from llm_eval_pipeline.core.schema import INPUT_DRIFT
from llm_eval_pipeline.defs.assets.ingest import EXAMPLES_KEY, GROUP
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema
from llm_eval_pipeline.defs.partitions import daily_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource
from llm_eval_pipeline.stages import StageError, drift_day


@asset(
    key=INPUT_DRIFT.name,
    deps=[EXAMPLES_KEY],
    partitions_def=daily_partitions,
    kinds={"delta", "python"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "The day's eval_examples against the previous day with examples: example ids "
        "added, removed and kept; task mix and each slice_by metadata field's mix "
        "(chi-square), prompt and reference length (PSI and KS), and the shift of the mean "
        "prompt embedding (all-MiniLM-L6-v2, permutation test). The metadata says drifted "
        "yes or no per test."
    ),
    metadata={"dagster/column_schema": column_schema(INPUT_DRIFT)},
)
def input_drift(
    context: AssetExecutionContext, metrics: MetricsResource, delta: DeltaStoreResource
) -> MaterializeResult:
    """Compare one day's examples with the previous day's and replace its partition."""
    day = dt.date.fromisoformat(context.partition_key)
    store = delta.store()
    try:
        done = drift_day(
            store,
            day,
            slice_by=tuple(metrics.slices.slice_by),
            embed=embed,
            seed=metrics.bootstrap.seed,
        )
    except StageError as exc:
        raise Failure(description=str(exc)) from exc
    drifted = [t.test for t in done.tests if t.drifted]
    context.log.info(
        f"{day} against {done.previous or 'no earlier day'}: {done.ids}; "
        f"drifted: {', '.join(drifted) or 'none'}"
    )
    lines = ["| test | drifted | detail |", "| --- | --- | --- |"]
    lines += [f"| {t.test} | {'yes' if t.drifted else 'no'} | {t.detail} |" for t in done.tests]
    return MaterializeResult(
        metadata={
            "previous_day": str(done.previous) if done.previous else "none",
            **{f"ids_{name}": count for name, count in done.ids.items()},
            **{f"drifted.{t.test}": "yes" if t.drifted else "no" for t in done.tests},
            "drifted_tests": MetadataValue.json(drifted),
            "tests": MetadataValue.md("\n".join(lines)),
            "delta_version": done.version,
            "delta_table": MetadataValue.path(str(store.path(INPUT_DRIFT))),
            "dagster/row_count": len(done.table),
        }
    )
