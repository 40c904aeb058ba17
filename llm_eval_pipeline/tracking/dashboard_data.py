"""What the dashboard shows, prepared from the tables: pure pandas, no Dagster, no Spark,
no HTML.

:class:`DashboardData` holds the rows the page is built from: ``metric_aggregates``,
``metric_slices`` and ``input_drift`` as read, each model's worst examples per day and
its win/tie/loss counts against the baseline per day and metric.
:func:`digest_examples` computes the last two one day×model at a time (only those rows
are kept), and the ``*_rows`` functions shape the frames the charts draw.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.metrics import registry
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.metrics.spec import GEOMETRIC, HIGHER, LOWER
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    PRIMARY_METRICS,
    Agg,
    Col,
    Drift,
    Slc,
)
from llm_eval_pipeline.core.slices import ALL, slice_name

WORST_N = 20
"""Examples kept per model and day: the worst ones by :func:`ranking_metric`."""
TIE_TOLERANCE = 1e-9
"""Paired values closer than this are a tie in the win/tie/loss counts."""


def _known(*names: str) -> tuple[str, ...]:
    """The names, checked against the metric registry at import time."""
    for name in names:
        registry.metric(name)
    return names


TREND_METRICS = _known(*PRIMARY_METRICS, "error_rate")
"""The metrics drawn over the days (one small chart each), in order."""
OPS_METRICS = _known("cost_usd", "judge_cost_usd", "latency_ms", "tokens_per_s")
"""Cost and speed, drawn per model in the data view where present."""
LEADERBOARD_METRICS = (*TREND_METRICS, *OPS_METRICS)
DIRECTED_METRICS = tuple(
    m for m in TREND_METRICS if m in ALL_METRIC_COLUMNS and METRICS[m].better in (HIGHER, LOWER)
)
"""Per-example metrics with a better direction: they rank examples and count wins."""

# Columns the dashboard derives (the tables' own come from core.schema).
REFERENCE = "reference"
"""The example's first reference (``example_table`` adds it)."""
DAY = "day"
"""The day as ``YYYY-MM-DD`` text (``eval_date`` is parsed as a date by the charts)."""
MODEL_INDEX = "model_index"
"""Position of the row's model in :func:`models`: it picks the model's checkbox."""
ROLE = "role"
"""``baseline`` or ``model``: the baseline is drawn apart."""
BASELINE_ROLE, MODEL_ROLE = "baseline", "model"
LABEL = "label"
"""A metric with its better direction, or a verdict with its q-value."""
INTERVAL = "interval"
"""``[ci_low, ci_high]`` as text, for tooltips."""
REGRESSED = "regressed_slices"
"""Slices on which the day×model's metric is a regression against the baseline."""
REGRESSED_ALL = "regressed_all"
"""Whether one of them is the slice ``all``."""
SLICE = "slice"
"""``key=value`` of a slice (``all`` for the whole partition)."""
GAIN = "gain"
"""Difference to the baseline relative to its mean, signed so that positive is better."""
DECIDED = "decided"
"""Whether the slice's verdict is other than inconclusive and the gain is known."""
RANKED_BY = "ranked_by"
"""The metric an example's worst-N rank comes from."""
OUTCOME = "outcome"
PAIRS = "pairs"
WIN, TIE, LOSS = "win", "tie", "loss"
OUTCOMES = (WIN, TIE, LOSS)
STATUS = "status"
"""A drift row's status: drifted, stable, or count (the ids_* rows, no test)."""
DRIFTED, STABLE, COUNT_ONLY = "drifted", "stable", "count"

EXAMPLE_COLUMNS = (Col.EVAL_DATE, Col.MODEL_ID, Col.EXAMPLE_ID, RANKED_BY)
EXAMPLE_COLUMNS += (Col.PROMPT, REFERENCE, Col.OUTPUT)
"""Columns of :attr:`DashboardData.examples` before the metric values."""
OUTCOME_COLUMNS = (Col.EVAL_DATE, Col.MODEL_ID, Agg.METRIC, WIN, TIE, LOSS)
"""Columns of :attr:`DashboardData.outcomes`."""
_AGG_COLUMNS = [Col.EVAL_DATE, Col.MODEL_ID, Agg.METRIC, Agg.COUNT, Agg.MEAN]
_AGG_COLUMNS += [Agg.CI_LOW, Agg.CI_HIGH]


@dataclass(frozen=True)
class DashboardData:
    """The rows the page is built from.

    ``aggregates``, ``slices`` and ``drift`` are ``metric_aggregates``, ``metric_slices``
    and ``input_drift`` rows (any days and models); ``examples`` the worst examples per
    model and day (:func:`worst_examples`); ``outcomes`` the win/tie/loss counts against
    the baseline (:func:`win_tie_loss`); ``baseline`` the baseline model's name."""

    aggregates: pd.DataFrame
    slices: pd.DataFrame
    drift: pd.DataFrame
    examples: pd.DataFrame
    outcomes: pd.DataFrame
    baseline: str | None = None


def day_text(values: pd.Series) -> pd.Series:
    """Dates, timestamps or ISO strings as ``YYYY-MM-DD`` text."""
    return pd.to_datetime(pd.Series(values)).dt.strftime("%Y-%m-%d")


def _numeric(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as float64 (NaN where missing or not a number)."""
    for column in columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def means(aggregates: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The aggregate rows of ``metrics`` with a finite mean, numbers as float64."""
    frame = aggregates.reindex(columns=_AGG_COLUMNS)
    frame = _numeric(frame[frame[Agg.METRIC].isin(metrics)].copy(), _AGG_COLUMNS[3:])
    frame = frame[np.isfinite(frame[Agg.MEAN])]
    frame[Col.MODEL_ID] = frame[Col.MODEL_ID].astype(str)
    return frame


def models(data: DashboardData) -> list[str]:
    """Every model with a mean of a shown metric, sorted."""
    frame = means(data.aggregates, LEADERBOARD_METRICS)
    return sorted(set(frame[Col.MODEL_ID]))


def days(data: DashboardData) -> list[str]:
    """Every day with a mean of a shown metric, as ``YYYY-MM-DD``, sorted."""
    frame = means(data.aggregates, LEADERBOARD_METRICS)
    return sorted(set(day_text(frame[Col.EVAL_DATE]))) if len(frame) else []


def present(frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` that occur in ``frame``'s metric column, in their order."""
    found = set(frame[Agg.METRIC]) if Agg.METRIC in frame else set()
    return [m for m in metrics if m in found]


def metric_label(metric: str) -> str:
    """A metric with its better direction: ``rougeL (higher is better)``."""
    return f"{metric} ({METRICS[metric].direction_label})"


def fmt(value: float) -> str:
    """A number for people: three decimals below 1, two up to 100, none beyond."""
    if not math.isfinite(value):
        return "—"
    size = abs(value)
    return f"{value:,.0f}" if size >= 100 else f"{value:.2f}" if size >= 1 else f"{value:.3f}"


# ---------------------------------------------------------------- examples


def _first_reference(refs: object) -> str:
    """The first reference of a list (or array) of references; a string as it is."""
    if isinstance(refs, str):
        return refs
    return str(refs[0]) if hasattr(refs, "__len__") and len(refs) else ""


def _has_number(values: pd.Series) -> bool:
    """Whether any of ``values`` is a number."""
    return bool(pd.to_numeric(values, errors="coerce").notna().any())


def ranking_metric(table: pd.DataFrame) -> str | None:
    """The first metric of :data:`DIRECTED_METRICS` with a value in ``table``."""
    return next(
        (m for m in DIRECTED_METRICS if m in table and _has_number(table[m])),
        None,
    )


def worst_candidates(table: pd.DataFrame, by: str | None, n: int) -> np.ndarray:
    """Positions of the rows of ``table`` that can be among its ``n`` worst by ``by``
    (:func:`worst_examples`' order): those worse than the ``n``-th value and, of those
    tied with it, the ones of smallest id; the ``n`` smallest ids when there is no
    ranking metric; every row when no more than ``n`` have a value. Sorting these alone
    gives the same first ``n`` as sorting the whole table, and the candidates of the
    batches of a table hold the table's."""
    ids = table[Col.EXAMPLE_ID]
    if by is None:
        return ids.argsort(kind="stable").to_numpy()[:n]
    values = pd.to_numeric(table[by], errors="coerce").to_numpy("float64", na_value=np.nan)
    key = values if METRICS[by].better == HIGHER else -values
    valued = np.flatnonzero(~np.isnan(key))
    if len(valued) <= n:
        return np.arange(len(table))
    cut = np.partition(key[valued], n - 1)[n - 1]
    below, tied = valued[key[valued] < cut], valued[key[valued] == cut]
    # many rows can share the cut (a score of 0): of those, the smallest ids
    first = ids.iloc[tied].argsort(kind="stable").to_numpy()
    return np.concatenate([below, tied[first[: n - len(below)]]])


def worst_examples(table: pd.DataFrame, n: int = WORST_N) -> pd.DataFrame:
    """The ``n`` worst examples of one day×model's example table (``example_table``):
    ranked by :func:`ranking_metric`, lowest first where higher is better and highest
    first where lower is better, ties by example id, examples without a value last.
    Columns: :data:`EXAMPLE_COLUMNS`, then the :data:`TREND_METRICS` with a value."""
    if table.empty:
        return pd.DataFrame(columns=list(EXAMPLE_COLUMNS))
    metrics = [m for m in TREND_METRICS if m in table and _has_number(table[m])]
    by = ranking_metric(table)
    frame = table.iloc[worst_candidates(table, by, n)].copy()
    if REFERENCE not in frame and Col.REFERENCES in frame:
        frame[REFERENCE] = frame[Col.REFERENCES].map(_first_reference)
    frame = _numeric(frame, metrics)
    frame[RANKED_BY] = by
    if by is None:
        frame = frame.sort_values(Col.EXAMPLE_ID, kind="stable")
    else:
        ascending = METRICS[by].better == HIGHER
        frame = frame.sort_values(
            [by, Col.EXAMPLE_ID], ascending=[ascending, True], na_position="last", kind="stable"
        )
    frame = frame.head(n).reindex(columns=[*EXAMPLE_COLUMNS, *metrics])
    frame[REFERENCE] = frame[REFERENCE].fillna("")
    return frame.reset_index(drop=True)


def win_tie_loss(table: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Per metric of :data:`DIRECTED_METRICS` that both have, how many of the examples
    they share (by example id, both values present) the model of ``table`` does better
    on than the ``baseline`` table of the same day (win), within :data:`TIE_TOLERANCE`
    (tie) or worse (loss), the metric's direction deciding which is better. Columns:
    :data:`OUTCOME_COLUMNS`, one row per metric."""
    rows = []
    if table.empty or baseline.empty:
        return pd.DataFrame(columns=list(OUTCOME_COLUMNS))
    metrics = [m for m in DIRECTED_METRICS if m in table and m in baseline]
    pairs = table[[Col.EXAMPLE_ID, *metrics]].merge(
        baseline[[Col.EXAMPLE_ID, *metrics]], on=Col.EXAMPLE_ID, suffixes=("", "_baseline")
    )
    first = table.iloc[0]
    for metric in metrics:
        ours = pd.to_numeric(pairs[metric], errors="coerce").to_numpy(dtype="float64")
        theirs = pd.to_numeric(pairs[f"{metric}_baseline"], errors="coerce")
        diff = ours - theirs.to_numpy(dtype="float64")
        diff = diff[np.isfinite(diff)]
        if not diff.size:
            continue
        better = diff if METRICS[metric].better == HIGHER else -diff
        ties = int((np.abs(better) <= TIE_TOLERANCE).sum())
        wins = int((better > TIE_TOLERANCE).sum())
        rows.append(
            (first[Col.EVAL_DATE], first[Col.MODEL_ID], metric, wins, ties, diff.size - wins - ties)
        )
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))


def digest_examples(
    partitions: Iterable[tuple[dt.date, Sequence[str]]],
    load: Callable[[dt.date, str], pd.DataFrame],
    baseline: str | None,
    n: int = WORST_N,
    rows_of: Callable[[dt.date, str, list[str]], pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per day and its models (``partitions``), each model's :func:`worst_examples` and,
    against the baseline of that day when it has one, its :func:`win_tie_loss` counts.

    ``load(day, model)`` gives one day×model's example table, or only its metrics when
    ``rows_of(day, model, ids)`` gives the whole rows (text included) of the worst ids;
    one is held at a time besides the baseline's of the day, and only the ``n`` worst
    rows and the counts are kept, so memory stays bounded by a day×model however many
    days there are."""
    worst, outcomes = [], []
    for day, day_models in partitions:
        base = load(day, baseline) if baseline in day_models else None
        for model in day_models:
            table = base if model == baseline and base is not None else load(day, model)
            ranked = worst_examples(table, n)
            if rows_of is not None and len(ranked):
                ranked = worst_examples(rows_of(day, model, list(ranked[Col.EXAMPLE_ID])), n)
            worst.append(ranked)
            if base is not None and model != baseline:
                outcomes.append(win_tie_loss(table, base))
            del table
    return _concat(worst, EXAMPLE_COLUMNS), _concat(outcomes, OUTCOME_COLUMNS)


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The non-empty ``frames`` one after the other; empty with ``columns`` if none."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- chart rows


def _with_models(frame: pd.DataFrame, data: DashboardData) -> pd.DataFrame:
    """``frame`` with the day as text, the model's index and its role."""
    frame[DAY] = day_text(frame[Col.EVAL_DATE]).to_numpy() if len(frame) else []
    frame[Col.EVAL_DATE] = frame[DAY]
    index = {model: i for i, model in enumerate(models(data))}
    frame[MODEL_INDEX] = frame[Col.MODEL_ID].map(index).to_numpy()
    frame[ROLE] = np.where(frame[Col.MODEL_ID] == data.baseline, BASELINE_ROLE, MODEL_ROLE)
    return frame


def _interval(low: float, high: float) -> str:
    """``[low, high]`` for people; empty without an interval."""
    return f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) and math.isfinite(high) else ""


def trend_rows(data: DashboardData) -> pd.DataFrame:
    """Per day, model and metric of :data:`TREND_METRICS`: the mean, its interval, the
    count, the metric's label, and the slices on which ``metric_slices`` calls it a
    regression against the baseline."""
    frame = _with_models(means(data.aggregates, TREND_METRICS), data)
    frame[LABEL] = frame[Agg.METRIC].map(metric_label)
    frame[INTERVAL] = [
        _interval(a, b) for a, b in zip(frame[Agg.CI_LOW], frame[Agg.CI_HIGH], strict=True)
    ]
    regressed = _regressions(data.slices)
    keys = zip(frame[DAY], frame[Col.MODEL_ID], frame[Agg.METRIC], strict=True)
    frame[REGRESSED] = [regressed.get(k, []) for k in keys]
    frame[REGRESSED_ALL] = [ALL in r for r in frame[REGRESSED]]
    return frame.sort_values([Agg.METRIC, Col.MODEL_ID, DAY], ignore_index=True)


def _regressions(slices: pd.DataFrame) -> dict[tuple[str, str, str], list[str]]:
    """Per (day, model, metric), the labels of its slices with verdict regression."""
    if slices.empty or Slc.VERDICT not in slices:
        return {}
    found = slices[slices[Slc.VERDICT] == Verdict.REGRESSION]
    out: dict[tuple[str, str, str], list[str]] = {}
    for day, model, metric, key, value in zip(
        day_text(found[Col.EVAL_DATE]) if len(found) else [],
        found[Col.MODEL_ID],
        found[Agg.METRIC],
        found[Slc.KEY],
        found[Slc.VALUE],
        strict=True,
    ):
        out.setdefault((day, str(model), metric), []).append(slice_name(key, value))
    return out


def ops_rows(data: DashboardData) -> pd.DataFrame:
    """Per day and model, the :data:`OPS_METRICS` present: mean, interval and count."""
    frame = _with_models(means(data.aggregates, OPS_METRICS), data)
    frame[LABEL] = frame[Agg.METRIC].map(metric_label)
    frame[INTERVAL] = [
        _interval(a, b) for a, b in zip(frame[Agg.CI_LOW], frame[Agg.CI_HIGH], strict=True)
    ]
    return frame.sort_values([Agg.METRIC, Col.MODEL_ID, DAY], ignore_index=True)


_SLICE_NUMBERS = [Agg.COUNT, Agg.MEAN, Slc.BASELINE_MEAN, Slc.DIFF, Slc.DIFF_CI_LOW]
_SLICE_NUMBERS += [Slc.DIFF_CI_HIGH, Slc.Q_VALUE]
SLICE_COLUMNS = (DAY, Col.MODEL_ID, SLICE, Agg.METRIC, *_SLICE_NUMBERS, Slc.VERDICT)
SLICE_COLUMNS += (LABEL, GAIN, DECIDED)
"""Columns of :func:`slice_rows`."""


def gain(metric: str, diff: float, baseline_mean: float) -> float:
    """``diff`` (model − baseline) relative to the baseline's mean, signed so that
    positive is better: for geometric metrics (whose diff is of logs) the ratio of the
    means minus one; NaN for a metric with no better direction."""
    spec = METRICS[metric]
    if spec.better not in (HIGHER, LOWER) or not math.isfinite(diff):
        return math.nan
    if spec.aggregation == GEOMETRIC:
        relative = math.expm1(diff)
    elif math.isfinite(baseline_mean) and baseline_mean != 0:
        relative = diff / abs(baseline_mean)
    else:
        relative = diff
    return relative if spec.better == HIGHER else -relative


def _verdict_label(verdict: str, q_value: float) -> str:
    """``regression, q=0.012``; the verdict alone without a q-value."""
    return f"{verdict}, q={q_value:.3g}" if math.isfinite(q_value) else str(verdict)


def slice_rows(data: DashboardData) -> pd.DataFrame:
    """Per day, model (not the baseline), slice and metric of :data:`TREND_METRICS`: the
    paired difference to the baseline with its interval, q-value and verdict, the
    :func:`gain` and whether the cell is decided (columns :data:`SLICE_COLUMNS`)."""
    frame = data.slices
    if frame.empty or Slc.DIFF not in frame:
        return pd.DataFrame(columns=list(SLICE_COLUMNS))
    frame = _numeric(frame[frame[Agg.METRIC].isin(TREND_METRICS)].copy(), _SLICE_NUMBERS)
    frame = frame[frame[Slc.DIFF].notna()]
    frame[DAY] = day_text(frame[Col.EVAL_DATE]).to_numpy() if len(frame) else []
    frame[Col.MODEL_ID] = frame[Col.MODEL_ID].astype(str)
    frame[SLICE] = [slice_name(k, v) for k, v in zip(frame[Slc.KEY], frame[Slc.VALUE], strict=True)]
    frame[LABEL] = [
        _verdict_label(v, q) for v, q in zip(frame[Slc.VERDICT], frame[Slc.Q_VALUE], strict=True)
    ]
    frame[GAIN] = [
        gain(m, d, b)
        for m, d, b in zip(
            frame[Agg.METRIC], frame[Slc.DIFF], frame[Slc.BASELINE_MEAN], strict=True
        )
    ]
    frame[DECIDED] = (frame[Slc.VERDICT] != Verdict.INCONCLUSIVE) & frame[GAIN].notna()
    return frame[list(SLICE_COLUMNS)].reset_index(drop=True)


def slices_of(rows: pd.DataFrame) -> list[str]:
    """The slice labels of :func:`slice_rows`, ``all`` first, then sorted."""
    found = set(rows[SLICE]) if len(rows) else set()
    return [ALL, *sorted(found - {ALL})]


def outcome_rows(data: DashboardData) -> pd.DataFrame:
    """:attr:`DashboardData.outcomes` long: a row per day, model, metric and outcome."""
    frame = data.outcomes.reindex(columns=list(OUTCOME_COLUMNS))
    long = frame.melt(
        id_vars=[Col.EVAL_DATE, Col.MODEL_ID, Agg.METRIC],
        value_vars=list(OUTCOMES),
        var_name=OUTCOME,
        value_name=PAIRS,
    )
    long[DAY] = day_text(long[Col.EVAL_DATE]).to_numpy() if len(long) else []
    long[Col.MODEL_ID] = long[Col.MODEL_ID].astype(str)
    long[PAIRS] = pd.to_numeric(long[PAIRS]).astype("int64")
    return long[[DAY, Col.MODEL_ID, Agg.METRIC, OUTCOME, PAIRS]]


DRIFT_COLUMNS = (Col.EVAL_DATE, DAY, Drift.TEST, Drift.STATISTIC, Drift.P_VALUE, STATUS)
DRIFT_COLUMNS += (Drift.DETAIL,)
"""Columns of :func:`drift_rows`."""


def drift_rows(data: DashboardData) -> pd.DataFrame:
    """``input_drift`` per day and test, with a status: drifted, stable or count."""
    frame = data.drift
    if frame.empty or Drift.TEST not in frame:
        return pd.DataFrame(columns=list(DRIFT_COLUMNS))
    frame = _numeric(frame.copy(), [Drift.STATISTIC, Drift.P_VALUE])
    frame[DAY] = day_text(frame[Col.EVAL_DATE]).to_numpy()
    frame[Col.EVAL_DATE] = frame[DAY]
    drifted = frame[Drift.DRIFTED]
    frame[STATUS] = [
        COUNT_ONLY if d is None or d is pd.NA or (isinstance(d, float) and math.isnan(d))
        else DRIFTED if bool(d) else STABLE
        for d in drifted
    ]  # fmt: skip
    return frame.reindex(columns=list(DRIFT_COLUMNS)).sort_values([DAY, Drift.TEST])


def example_rows(data: DashboardData) -> pd.DataFrame:
    """The worst examples with the day as text, the metrics without any value dropped."""
    extra = [c for c in data.examples.columns if c not in EXAMPLE_COLUMNS]
    frame = data.examples.reindex(columns=[*EXAMPLE_COLUMNS, *extra])
    frame[Col.EVAL_DATE] = day_text(frame[Col.EVAL_DATE]).to_numpy() if len(frame) else []
    frame[Col.MODEL_ID] = frame[Col.MODEL_ID].astype(str)
    keep = [c for c in frame.columns if c in EXAMPLE_COLUMNS or frame[c].notna().any()]
    return frame[keep].sort_values([Col.EVAL_DATE, Col.MODEL_ID], kind="stable")
