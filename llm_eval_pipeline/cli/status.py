"""``llm-eval status``: the Delta tables, their row counts per day, and the leaderboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa

from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    EXAMPLE_METRICS,
    GENERATIONS,
    HEADLINE_METRICS,
    INPUT_DRIFT,
    METRIC_AGGREGATES,
    METRIC_SLICES,
    QUARANTINED_EXAMPLES,
    Agg,
    Col,
    Drift,
    Slc,
    TableSpec,
)
from llm_eval_pipeline.core.slices import regressions, slice_name
from llm_eval_pipeline.delta.store import FILE_ROWS
from llm_eval_pipeline.settings import Settings

SUMMARY_TABLES: tuple[TableSpec, ...] = (
    EVAL_EXAMPLES,
    QUARANTINED_EXAMPLES,
    INPUT_DRIFT,
    GENERATIONS,
    EXAMPLE_METRICS,
    METRIC_AGGREGATES,
    METRIC_SLICES,
)


def show_status(settings: Settings, last_days: int) -> int:
    """``llm-eval status``: the Delta tables and the leaderboard of the latest days."""
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    found = {
        dt.date.fromisoformat(p[Col.EVAL_DATE])
        for spec in SUMMARY_TABLES
        for p in store.partitions(spec)
    }
    print_summary(settings, sorted(found)[-last_days:])
    return 0


def partition_counts(store, spec) -> list[dict]:
    """Rows per partition of a table: its partition columns and ``count_all``; empty when
    the table was never written."""
    if store.version(spec) is None:
        return []
    keys = list(spec.partition_by)
    files = store.file_rows(spec)
    if files.column(FILE_ROWS).null_count:  # a file written without statistics: count rows
        table = store.read_arrow(spec, columns=keys)
        return table.group_by(keys).aggregate([([], "count_all")]).to_pylist()
    sums = files.group_by(keys).aggregate([(FILE_ROWS, "sum")]).to_pylist()
    return [{**{k: r[k] for k in keys}, "count_all": r[f"{FILE_ROWS}_sum"]} for r in sums]


def print_summary(settings: Settings, days: Sequence[dt.date]) -> None:
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    print(f"\nDelta tables under {settings.delta_dir}:")
    for spec in SUMMARY_TABLES:
        version = store.version(spec)
        if version is None:
            print(f"  {spec.name:<22} (not written)")
            continue
        counts = partition_counts(store, spec)
        print(f"  {spec.name:<22} version {version}  {store.path(spec)}")
        for day in days:
            parts = [r for r in counts if r[Col.EVAL_DATE] == day]
            if len(spec.partition_by) == 1:
                shown = f"{parts[0]['count_all'] if parts else 0} rows"
            else:
                shown = ", ".join(f"{r[Col.MODEL_ID]}: {r['count_all']} rows" for r in parts)
            print(f"      {day}  {shown or '-'}")
    print_leaderboard(store, days)
    if days:
        print_changes(store, settings.regression_metrics, days[-1])


def print_leaderboard(store, days: Sequence[dt.date]) -> None:
    """The latest day's headline metrics per model, with 95% bootstrap intervals."""
    import pyarrow.compute as pc

    if store.version(METRIC_AGGREGATES) is None:
        return
    table = store.read_arrow(METRIC_AGGREGATES)
    table = table.filter(pc.is_in(table.column(Col.EVAL_DATE), value_set=pa.array(days)))
    board = Leaderboard.of(table.to_pandas(), HEADLINE_METRICS)
    if not board.models:
        return
    print(f"\nLeaderboard for {board.day} (mean [95% CI], * best; perplexity: geometric mean):")
    print(f"  {'model':<20}" + "".join(f"{name:>30}" for name in board.metrics))
    for model in board.models:
        cells = []
        for metric in board.metrics:
            entry = board.entry(model, metric)
            text = "-"
            if entry is not None:
                ci = f" [{entry.ci_low:.3f}, {entry.ci_high:.3f}]" if entry.has_interval else ""
                text = f"{'*' if entry.best else ''}{entry.mean:.3f}{ci}"
            cells.append(text.rjust(30))
        print(f"  {model:<20}{''.join(cells)}")


def print_changes(store, regression_metrics: Sequence[str], day: dt.date) -> None:
    """The day's answer to "did anything change, and where": the regression metrics'
    regressions per model and slice (``metric_slices``) and the drift tests that flagged
    the day's examples (``input_drift``)."""
    if store.version(METRIC_SLICES) is not None:
        slices = store.read_arrow(METRIC_SLICES, {Col.EVAL_DATE: day}).to_pandas()
        found = regressions(slices, regression_metrics)
        print(
            f"\nRegressions against the baseline on {day} (metric_slices; difference, "
            "perplexities in nats, and q-value):"
        )
        if found.empty:
            print("  none")
        for model, rows in found.groupby(Col.MODEL_ID, sort=True):
            print(f"  {model}:")
            for (key, value), cells in rows.groupby([Slc.KEY, Slc.VALUE], sort=False):
                shown = ", ".join(
                    f"{m} {d:+.3f} (q {q:.2g})"
                    for m, d, q in zip(
                        cells[Agg.METRIC], cells[Slc.DIFF], cells[Slc.Q_VALUE], strict=True
                    )
                )
                print(f"    {slice_name(key, value)}: {shown}")
    if store.version(INPUT_DRIFT) is not None:
        drift = store.read_arrow(INPUT_DRIFT, {Col.EVAL_DATE: day}).to_pandas()
        if not drift.empty:
            flagged = drift[drift[Drift.DRIFTED].eq(True)]
            ids = drift.set_index(Drift.TEST)[Drift.STATISTIC]
            counts = ", ".join(
                f"{int(ids[f'ids_{k}'])} {k}"
                for k in ("added", "removed", "kept")
                if f"ids_{k}" in ids
            )
            print(f"\nInput drift on {day} (input_drift): example ids {counts}")
            for detail in flagged[Drift.DETAIL]:
                print(f"  drifted: {detail}")
