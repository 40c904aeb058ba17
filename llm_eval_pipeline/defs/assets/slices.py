"""Where a model changed: ``metric_slices``, every metric on every slice of a day×model,
compared with the baseline on the same examples (``core.slices``), and the checks that
read it: ``no_regression_vs_baseline`` and ``enough_examples``."""

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

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GEOMETRIC_METRICS,
    METRIC_SLICES,
    Agg,
    Slc,
)
from llm_eval_pipeline.core.slices import ALL, power_shortfalls, regressions, slice_name
from llm_eval_pipeline.defs.assets.generation import partition_of
from llm_eval_pipeline.defs.automation import after_upstream_updates
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema
from llm_eval_pipeline.defs.partitions import day_model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, MetricsResource, ModelsResource
from llm_eval_pipeline.stages import (
    SlicedPartition,
    StageError,
    slice_day_model,
)

GROUP = "reporting"
SHOWN_VERDICTS = (Verdict.REGRESSION, Verdict.IMPROVEMENT)
REGRESSION_CHECK = "no_regression_vs_baseline"
ENOUGH_EXAMPLES_CHECK = "enough_examples"
WORST_EXAMPLES = 5


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
    check_specs=[
        AssetCheckSpec(
            REGRESSION_CHECK,
            asset=METRIC_SLICES.name,
            description="No regression metric is worse than the baseline model's, on the "
            "same day and examples, beyond the margin on any slice (paired bootstrap, "
            "Benjamini-Hochberg across every metric × slice).",
        ),
        AssetCheckSpec(
            ENOUGH_EXAMPLES_CHECK,
            asset=METRIC_SLICES.name,
            description="The day had enough examples: each regression metric's minimum "
            "detectable effect (80% power, 5% level) is at most the margin, so that a "
            "regression of twice the margin is called one at least 80% of the time (a "
            "warning).",
        ),
    ],
)
def metric_slices(
    context: AssetExecutionContext,
    models: ModelsResource,
    metrics: MetricsResource,
    delta: DeltaStoreResource,
) -> MaterializeResult:
    """Slice one day×model partition, compare it with the baseline, replace it in Delta,
    and run its checks."""
    day, model_id = partition_of(context)
    baseline = models.registry().baseline()
    baseline_name = baseline.name if baseline else None
    store = delta.store()
    try:
        done = slice_day_model(
            store,
            day,
            model_id,
            baseline=baseline_name if baseline_name != model_id else None,
            slice_by=tuple(metrics.slices.slice_by),
            min_slice_size=metrics.slices.min_slice_size,
            relative_margin=metrics.regression.margin,
            margin_floor=metrics.regression.margin_floor,
            resamples=metrics.bootstrap.resamples,
            seed=metrics.bootstrap.seed,
        )
    except (StageError, ValueError) as exc:
        raise Failure(description=str(exc)) from exc
    table = done.table
    if done.unmatched:
        context.log.warning(
            f"{done.unmatched} scored rows of {model_id} on {day} have no example in the "
            "day's eval_examples (ingested again since?): left out of the slices; "
            "materialize the partition's chain again"
        )
    notable = table[table[Slc.VERDICT].isin(SHOWN_VERDICTS)]
    context.log.info(
        f"{model_id} on {day}: {len(table)} slice × metric rows, "
        f"{len(notable)} with a regression or improvement"
    )
    if baseline_name is None or baseline_name == model_id:
        note = (
            "no baseline model in the registry" if baseline_name is None else "this is the baseline"
        )
        checks = [
            AssetCheckResult(check_name=name, passed=True, metadata={"note": note})
            for name in (REGRESSION_CHECK, ENOUGH_EXAMPLES_CHECK)
        ]
    elif done.baseline is None:
        # Not compared is not "no regression": a warning until the baseline's partition
        # lands and this one is materialized again.
        missing = (
            f"not compared: baseline {baseline_name} has no metrics for {day} yet; "
            "materialize its partition, then this one again"
        )
        checks = [
            AssetCheckResult(
                check_name=name,
                passed=False,
                severity=AssetCheckSeverity.WARN,
                description=missing,
                metadata={"note": f"baseline {baseline_name} has no metrics for {day} yet"},
            )
            for name in (REGRESSION_CHECK, ENOUGH_EXAMPLES_CHECK)
        ]
    else:
        checks = [regression_check(done, metrics), enough_examples_check(done, metrics)]
    return MaterializeResult(
        metadata={
            "rows": len(table),
            "slices": int(table[[Slc.KEY, Slc.VALUE]].drop_duplicates().shape[0]),
            "baseline": done.baseline or "none",
            "scored_rows_without_example": done.unmatched,
            "verdicts": MetadataValue.json(
                {str(k): int(v) for k, v in table[Slc.VERDICT].value_counts().items()}
            ),
            "regressions_and_improvements": MetadataValue.md(_markdown(notable)),
            "delta_version": done.version,
            "delta_table": MetadataValue.path(str(store.path(METRIC_SLICES))),
            "dagster/row_count": len(table),
        },
        check_results=checks,
    )


def _compared(done: SlicedPartition, metrics: MetricsResource) -> tuple[list[str], list[str]]:
    """The regression metrics compared on the slice ``all``, and those that were not."""
    everything = done.table[(done.table[Slc.KEY] == ALL) & done.table[Slc.DIFF].notna()]
    found = set(everything[Agg.METRIC])
    wanted = metrics.regression.metrics
    return [m for m in wanted if m in found], [m for m in wanted if m not in found]


def regression_check(done: SlicedPartition, metrics: MetricsResource) -> AssetCheckResult:
    """Fails (severity from the settings) when a regression metric regressed on any slice,
    the verdict having survived Benjamini–Hochberg; names each such slice."""
    compared, uncompared = _compared(done, metrics)
    # Passing must not claim what was never checked: a name that is no metric, or whose
    # group is off, fails loudly; so does a partition where no metric could be compared.
    misconfigured = [
        m
        for m in metrics.regression.metrics
        if m not in METRICS or METRICS[m].group not in metrics.groups
    ]
    if misconfigured or not compared:
        return AssetCheckResult(
            check_name=REGRESSION_CHECK,
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=(
                f"regression_metrics {misconfigured} are not metrics of the enabled groups "
                f"{list(metrics.groups)}"
                if misconfigured
                else f"no regression metric has an example scored by both this model and "
                f"{done.baseline}"
            ),
            metadata={
                "baseline": str(done.baseline),
                "not_compared": MetadataValue.json(uncompared),
                "compared": MetadataValue.json(compared),
            },
        )
    table = done.table
    regressed = regressions(table, compared)
    everything = table[(table[Slc.KEY] == ALL) & table[Agg.METRIC].isin(compared)]
    metadata: dict[str, object] = {
        "baseline": str(done.baseline),
        "margin": f"{metrics.regression.margin:.0%} of the baseline mean (of the geometric "
        f"mean for perplexities: log(1 + {metrics.regression.margin:g}) nats), at least "
        f"{metrics.regression.margin_floor:g}",
        "compared": MetadataValue.json(compared),
        "not_compared": MetadataValue.json(uncompared),
        "comparison": MetadataValue.md(_markdown(everything)),
        "regressed_slices": MetadataValue.md(_markdown(regressed)),
        "regressions": MetadataValue.json(_names(regressed)),
    }
    for metric in dict.fromkeys(regressed[Agg.METRIC]):
        metadata[f"{metric}_worst_examples"] = MetadataValue.json(_worst(done, metric))
    return AssetCheckResult(
        check_name=REGRESSION_CHECK,
        passed=regressed.empty,
        severity=AssetCheckSeverity(metrics.regression.severity),
        description=(
            f"worse than {done.baseline} on {_by_slice(regressed)}"
            if not regressed.empty
            else f"no regression metric worse than {done.baseline} beyond the margin on any slice"
        ),
        metadata=metadata,
    )


def enough_examples_check(done: SlicedPartition, metrics: MetricsResource) -> AssetCheckResult:
    """Warns when a regression metric's minimum detectable effect on the whole partition
    exceeds the margin: the day could not have shown a regression of that size."""
    compared, _ = _compared(done, metrics)
    power = power_shortfalls(
        done.table, compared, metrics.regression.margin, metrics.regression.margin_floor
    )
    short = power[power["short"]]
    lines = [
        "| metric | n (scored) | minimum detectable effect | margin | pairs needed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in power.to_dict("records"):
        lines.append(
            f"| {r[Agg.METRIC]} | {r[Agg.COUNT]} | {r[Slc.MDE]:.4g} | {r['margin']:.4g} | "
            f"{r[Slc.N_NEEDED]:.0f} |"
        )
    return AssetCheckResult(
        check_name=ENOUGH_EXAMPLES_CHECK,
        passed=short.empty and not power.empty,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"too few examples to see a regression of the margin's size on "
            f"{', '.join(short[Agg.METRIC])} (the minimum detectable effect exceeds the "
            f"margin; pairs needed: {', '.join(f'{n:.0f}' for n in short[Slc.N_NEEDED])})"
            if not short.empty
            else "no regression metric compared"
            if power.empty
            else "each regression metric's minimum detectable effect is within the margin: "
            "a regression of twice the margin is called one at least 80% of the time"
        ),
        metadata={"power": MetadataValue.md("\n".join(lines))},
    )


def _names(rows: pd.DataFrame) -> list[str]:
    """``metric (slice=value)`` of each row, ``metric (all)`` for the whole partition."""
    return [
        f"{m} ({slice_name(k, v)})"
        for m, k, v in zip(rows[Agg.METRIC], rows[Slc.KEY], rows[Slc.VALUE], strict=True)
    ]


def _by_slice(rows: pd.DataFrame, shown: int = 6) -> str:
    """``slice=value (metric, metric); ...`` for the first ``shown`` slices of ``rows``."""
    groups: dict[str, list[str]] = {}
    for m, k, v in zip(rows[Agg.METRIC], rows[Slc.KEY], rows[Slc.VALUE], strict=True):
        groups.setdefault(slice_name(k, v), []).append(m)
    text = "; ".join(f"{name} ({', '.join(ms)})" for name, ms in list(groups.items())[:shown])
    more = len(groups) - shown
    return text + (f"; and {more} more slices" if more > 0 else "")


def _worst(done: SlicedPartition, metric: str) -> dict[str, float]:
    """The examples where the candidate lost most against the baseline on ``metric``."""
    return done.worst(metric, WORST_EXAMPLES) if done.worst is not None else {}


def _markdown(rows: pd.DataFrame) -> str:
    lines = [
        "| slice | metric (log: difference in nats) | n | mean | baseline | difference [95% CI] "
        "| q | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows.to_dict("records"):
        log = " (log)" if r[Agg.METRIC] in GEOMETRIC_METRICS else ""
        lines.append(
            f"| {r[Slc.KEY]}={r[Slc.VALUE]} | {r[Agg.METRIC]}{log} | {r[Agg.COUNT]} | "
            f"{r[Agg.MEAN]:.4f} | {r[Slc.BASELINE_MEAN]:.4f} | {r[Slc.DIFF]:+.4f} "
            f"[{r[Slc.DIFF_CI_LOW]:+.4f}, {r[Slc.DIFF_CI_HIGH]:+.4f}] | "
            f"{r[Slc.Q_VALUE]:.3g} | {r[Slc.VERDICT]} |"
        )
    return "\n".join(lines)
