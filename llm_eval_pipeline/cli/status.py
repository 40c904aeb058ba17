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
    METRIC_AGGREGATES,
    QUARANTINED_EXAMPLES,
    Col,
    TableSpec,
)
from llm_eval_pipeline.settings import Settings

SUMMARY_TABLES: tuple[TableSpec, ...] = (
    EVAL_EXAMPLES,
    QUARANTINED_EXAMPLES,
    GENERATIONS,
    EXAMPLE_METRICS,
    METRIC_AGGREGATES,
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


def print_summary(settings: Settings, days: Sequence[dt.date]) -> None:
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    print(f"\nDelta tables under {settings.delta_dir}:")
    for spec in SUMMARY_TABLES:
        version = store.version(spec)
        if version is None:
            print(f"  {spec.name:<22} (not written)")
            continue
        table = store.read_arrow(spec)
        groups = [c for c in spec.partition_by]
        counts = table.group_by(groups).aggregate([([], "count_all")]).to_pylist()
        print(f"  {spec.name:<22} version {version}  {store.path(spec)}")
        for day in days:
            parts = [r for r in counts if r[Col.EVAL_DATE] == day]
            if len(groups) == 1:
                shown = f"{parts[0]['count_all'] if parts else 0} rows"
            else:
                shown = ", ".join(f"{r[Col.MODEL_ID]}: {r['count_all']} rows" for r in parts)
            print(f"      {day}  {shown or '-'}")
    print_leaderboard(store, days)


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
