"""The gold table: per-metric aggregates of each day×model, with its range and error-rate
checks (the comparison with the baseline is ``metric_slices``')."""

import math

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from llm_eval_pipeline.core.drift import ChangeSplit
from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GENERATIONS,
    GEOMETRIC_METRICS,
    HEADLINE_METRICS,
    METRIC_AGGREGATES,
    Col,
)
from llm_eval_pipeline.defs.assets.generation import partition_of
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema, leaderboard_markdown
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource, ModelsResource
from llm_eval_pipeline.stages import (
    StageError,
    aggregate_day_model,
    change_since_previous_day,
)

GROUP = "reporting"
RANGE_CHECK = "metrics_in_valid_range"
ERROR_RATE_CHECK = "error_rate_under_threshold"


@asset(
    key=METRIC_AGGREGATES.name,
    deps=[EXAMPLE_METRICS.name, GENERATIONS.name],
    partitions_def=day_model_partitions,
    automation_condition=after_upstream_updates,
    kinds={"delta", "pandas"},
    group_name=GROUP,
    owners=OWNERS,
    description=(
        "Per metric of each day×model: count, mean, standard deviation, p50, p90 and a "
        "seeded 95% bootstrap confidence interval of the mean; error rate, latency and "
        "tokens/s of the generation; the Delta versions it read. The comparison with the "
        "baseline, slice by slice, is metric_slices'."
    ),
    metadata={"dagster/column_schema": column_schema(METRIC_AGGREGATES)},
    check_specs=[
        AssetCheckSpec(
            RANGE_CHECK,
            asset=METRIC_AGGREGATES.name,
            description="Every per-example metric lies in its valid range.",
        ),
        AssetCheckSpec(
            ERROR_RATE_CHECK,
            asset=METRIC_AGGREGATES.name,
            description="The share of failed generations is at most warn_error_rate (a "
            "warning: above max_error_rate the generations asset itself fails).",
        ),
    ],
)
def metric_aggregates(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
) -> MaterializeResult:
    """Aggregate one day×model partition, replace it in Delta, and run its checks."""
    day, model_id = partition_of(context)
    store = delta.store()
    try:
        specs = models.registry().load()
        spec = next((s for s in specs if s.name == model_id), None)
        done = aggregate_day_model(
            store,
            day,
            model_id,
            resamples=metrics.bootstrap.resamples,
            seed=metrics.bootstrap.seed,
            prices=spec.prices if spec else None,
            judge_prices=metrics.judge.prices() if metrics.judge else None,
        )
    except StageError as exc:
        raise Failure(description=str(exc)) from exc
    baseline = next((s for s in specs if s.baseline), None)
    day_table = store.read_arrow(METRIC_AGGREGATES, {Col.EVAL_DATE: day}).to_pandas()
    context.log.info(f"{model_id} on {day}: {len(done.table)} metrics aggregated")
    means = done.means
    previous, changes = change_since_previous_day(store, day, model_id, metrics.regression.metrics)
    return MaterializeResult(
        metadata={
            **{name: MetadataValue.float(value) for name, value in means.items()},
            "previous_day": str(previous) if previous else "none",
            "change_since_previous_day": MetadataValue.md(_change_markdown(changes)),
            **{
                f"{metric}.change_{part}": MetadataValue.float(value)
                for metric, split in changes.items()
                for part, value in (("recurring", split.recurring), ("data", split.data))
                if math.isfinite(value)
            },
            "leaderboard": MetadataValue.md(
                leaderboard_markdown(
                    Leaderboard.of(day_table, HEADLINE_METRICS, baseline.name if baseline else None)
                )
            ),
            "rows": done.rows,
            "metric_config_hash": ",".join(done.config_hashes),
            "delta_version": done.version,
            "delta_table": MetadataValue.path(str(store.path(METRIC_AGGREGATES))),
            "dagster/row_count": len(done.table),
        },
        check_results=[
            range_check(done.out_of_range),
            error_rate_check(means.get("error_rate", 0.0), models.warn_error_rate),
        ],
    )


def _change_markdown(changes: dict[str, ChangeSplit]) -> str:
    lines = [
        "| metric | change | on recurring examples (the model) | from added and removed "
        "examples (the data) | recurring examples |",
        "| --- | --- | --- | --- | --- |",
    ]
    for metric, c in changes.items():
        scale = " (log)" if metric in GEOMETRIC_METRICS else ""
        lines.append(
            f"| {metric}{scale} | {c.change:+.4f} | {c.recurring:+.4f} | {c.data:+.4f} | {c.kept} |"
        )
    return "\n".join(lines)


def range_check(bad: dict[str, int]) -> AssetCheckResult:
    """Fails when any per-example metric lies outside its valid range (``bad``: how many
    values of each metric, ``core.aggregate.out_of_range``)."""
    return AssetCheckResult(
        check_name=RANGE_CHECK,
        passed=not bad,
        severity=AssetCheckSeverity.ERROR,
        metadata={"out_of_range": MetadataValue.json(bad)},
    )


def error_rate_check(error_rate: float, threshold: float) -> AssetCheckResult:
    """Warns when more rows failed than ``warn_error_rate``: the partition was written (it
    stayed under ``max_error_rate``), but its metrics cover fewer examples than asked."""
    return AssetCheckResult(
        check_name=ERROR_RATE_CHECK,
        passed=error_rate <= threshold,
        severity=AssetCheckSeverity.WARN,
        description=f"{error_rate:.1%} of the generations failed (warns above {threshold:.1%})",
        metadata={"error_rate": error_rate, "warn_error_rate": threshold},
    )
