"""The gold table: per-metric aggregates of each day×model, with its regression checks."""

import datetime as dt

import pandas as pd
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

from llm_eval_pipeline.core.aggregate import (
    PairedDifference,
    is_regression,
    out_of_range,
    paired_difference,
)
from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GENERATIONS,
    HEADLINE_METRICS,
    LOWER_IS_BETTER,
    METRIC_AGGREGATES,
    Col,
)
from llm_eval_pipeline.defs.assets.generation import partition_of
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema, leaderboard_markdown
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource, ModelsResource
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.stages import StageError, aggregate_day_model

GROUP = "reporting"
REGRESSION_CHECK = "no_regression_vs_baseline"
RANGE_CHECK = "metrics_in_valid_range"
ERROR_RATE_CHECK = "error_rate_under_threshold"
WORST_EXAMPLES = 5


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
        "tokens/s of the generation; the Delta versions it read. Checks compare each model "
        "with the registry's baseline on the same examples (paired bootstrap)."
    ),
    metadata={"dagster/column_schema": column_schema(METRIC_AGGREGATES)},
    check_specs=[
        AssetCheckSpec(
            REGRESSION_CHECK,
            asset=METRIC_AGGREGATES.name,
            description="No metric is worse than the baseline model's on the same day and "
            "examples beyond the configured margin, with 95% confidence (paired bootstrap).",
        ),
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
        done = aggregate_day_model(
            store, day, model_id, resamples=metrics.bootstrap.resamples, seed=metrics.bootstrap.seed
        )
    except StageError as exc:
        raise Failure(description=str(exc)) from exc
    baseline = models.registry().baseline()
    day_table = store.read_arrow(METRIC_AGGREGATES, {Col.EVAL_DATE: day}).to_pandas()
    context.log.info(f"{model_id} on {day}: {len(done.table)} metrics aggregated")
    means = done.means
    return MaterializeResult(
        metadata={
            **{name: MetadataValue.float(value) for name, value in means.items()},
            "leaderboard": MetadataValue.md(
                leaderboard_markdown(
                    Leaderboard.of(day_table, HEADLINE_METRICS, baseline.name if baseline else None)
                )
            ),
            "rows": int(len(done.generated)),
            "metric_config_hash": ",".join(done.config_hashes),
            "delta_version": done.version,
            "delta_table": MetadataValue.path(str(store.path(METRIC_AGGREGATES))),
            "dagster/row_count": len(done.table),
        },
        check_results=[
            regression_check(
                store, day, model_id, baseline.name if baseline else None, done.scored, metrics
            ),
            range_check(done.scored),
            error_rate_check(means.get("error_rate", 0.0), models.warn_error_rate),
        ],
    )


def regression_check(
    store: DeltaStore,
    day: dt.date,
    model_id: str,
    baseline: str | None,
    scored: pd.DataFrame,
    metrics: MetricsResource,
) -> AssetCheckResult:
    """Paired bootstrap against the baseline's metrics on the same day and examples."""
    if baseline is None or baseline == model_id:
        note = "no baseline model in the registry" if baseline is None else "this is the baseline"
        return AssetCheckResult(check_name=REGRESSION_CHECK, passed=True, metadata={"note": note})
    reference = store.read_arrow(
        EXAMPLE_METRICS, {Col.EVAL_DATE: day, Col.MODEL_ID: baseline}
    ).to_pandas()
    if reference.empty:
        # Not compared is not "no regression": a warning until the baseline's partition
        # lands and this one is materialized again.
        return AssetCheckResult(
            check_name=REGRESSION_CHECK,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"not compared: baseline {baseline} has no metrics for {day} yet; "
            f"materialize its partition, then this one again",
            metadata={"note": f"baseline {baseline} has no metrics for {day} yet"},
        )
    candidate = scored.set_index(Col.EXAMPLE_ID)
    reference = reference.set_index(Col.EXAMPLE_ID)
    compared: list[PairedDifference] = [
        paired_difference(
            name,
            candidate[name] if name in candidate else pd.Series(dtype="float64"),
            reference[name] if name in reference else pd.Series(dtype="float64"),
            metrics.bootstrap.resamples,
            seed=metrics.bootstrap.seed,
        )
        for name in metrics.regression.metrics
    ]
    # Passing must not claim what was never checked: a name that is no metric, or whose
    # group is off, fails loudly; so does a partition where no metric could be compared.
    misconfigured = [
        d.metric
        for d in compared
        if d.metric not in METRICS or METRICS[d.metric].group not in metrics.groups
    ]
    uncompared = [d.metric for d in compared if not d.n]
    compared = [d for d in compared if d.n]
    if misconfigured or not compared:
        return AssetCheckResult(
            check_name=REGRESSION_CHECK,
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=(
                f"regression_metrics {misconfigured} are not metrics of the enabled groups "
                f"{list(metrics.groups)}"
                if misconfigured
                else f"no regression metric has an example scored by both {model_id} and "
                f"{baseline} on {day}"
            ),
            metadata={
                "baseline": baseline,
                "not_compared": MetadataValue.json(uncompared),
                "compared": MetadataValue.json([d.metric for d in compared]),
            },
        )
    regressed = [d for d in compared if is_regression(d, metrics.regression.margin)]
    metadata: dict[str, object] = {
        "baseline": baseline,
        "margin": f"{metrics.regression.margin:.0%} of the baseline mean",
        "compared": MetadataValue.json([d.metric for d in compared]),
        "not_compared": MetadataValue.json(uncompared),
        "comparison": MetadataValue.md(_comparison_markdown(compared, regressed)),
    }
    for diff in regressed:
        change = candidate[diff.metric] - reference[diff.metric]
        worst = change.dropna().sort_values(ascending=diff.metric not in LOWER_IS_BETTER)
        metadata[f"{diff.metric}_worst_examples"] = MetadataValue.json(
            {str(k): round(float(v), 4) for k, v in worst.head(WORST_EXAMPLES).items()}
        )
    return AssetCheckResult(
        check_name=REGRESSION_CHECK,
        passed=not regressed,
        severity=AssetCheckSeverity(metrics.regression.severity),
        description=(
            f"worse than {baseline} on {', '.join(d.metric for d in regressed)}"
            if regressed
            else f"no metric worse than {baseline} beyond the margin"
        ),
        metadata=metadata,
    )


def _comparison_markdown(
    compared: list[PairedDifference], regressed: list[PairedDifference]
) -> str:
    lines = [
        "| metric | n | model | baseline | difference [95% CI] | regression |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in compared:
        lines.append(
            f"| {d.metric} | {d.n} | {d.candidate_mean:.4f} | {d.baseline_mean:.4f} | "
            f"{d.difference:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] | "
            f"{'yes' if d in regressed else 'no'} |"
        )
    return "\n".join(lines)


def range_check(scored: pd.DataFrame) -> AssetCheckResult:
    bad = out_of_range(scored)
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
