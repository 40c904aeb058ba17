"""Where a model changed: every metric on every slice of a day×model's examples, with its
interval and, against the baseline on the same example ids, a paired test.

A *slice* is a subset of the partition's examples named by a key and a value: ``all``
(every example), ``task``, any metadata field named in ``slice_by``, the prompt length
tercile (``prompt_length``: short / medium / long, cut at the partition's own terciles)
and ``recurring`` (``recurring``: the example id was evaluated on an earlier day, else
``new``).

For each slice and metric (the statistics live in ``core.aggregate``, with their
definitions and sources):

* ``mean`` and its percentile bootstrap interval (Efron & Tibshirani 1993), on the log
  scale and mapped back for metrics aggregated geometrically (perplexities);
* against the baseline, on the examples both models have a value for: the mean paired
  difference ``diff`` (candidate − baseline, log scale for geometric metrics) with its
  paired bootstrap interval (Koehn 2004), a two-sided bootstrap ``p_value``, the
  Benjamini–Hochberg ``q_value`` over every test of the partition (Benjamini & Hochberg
  1995), the minimum detectable effect ``mde`` and the ``n_needed`` to detect the margin
  (normal approximation, 80% power), and the :func:`~llm_eval_pipeline.core.aggregate.verdict`.

A sub-slice with fewer than ``min_slice_size`` pairs gets no test (verdict
``inconclusive``); the slice ``all`` is the partition itself and is always tested (two
pairs or more), so that a small eval set is still compared with its baseline. The margin
is ``relative_margin`` × |baseline mean| (for geometric metrics, compared on the log
scale, ``log(1 + relative_margin)``), and at least ``margin_floor``: against a baseline
mean near 0, a relative margin alone would call a difference of 0.01 on a metric in
[0, 1] a regression or an improvement. A metric with no better direction (a token count)
gets its difference and interval but no test.

The bootstrap streams: the rows pass once, a block at a time, through a
``core.aggregate.BootstrapSums``, whose Poisson counts of a block serve every slice, every
metric (``counts @ values``) and both the means and the paired differences. What it keeps
is per slice, resample and metric, so a million-row partition needs the memory of its
slices, not of its rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.aggregate import (
    BootstrapSums,
    Verdict,
    bh_q_values,
    bootstrap_p_values,
    mde,
    n_needed,
    percentile_interval,
    row_keys,
    verdict,
)
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.metrics.spec import GEOMETRIC, NEITHER
from llm_eval_pipeline.core.schema import METRIC_SLICES, Agg, Col, Slc

ALL = "all"
PROMPT_LENGTH = "prompt_length"
RECURRING = "recurring"
MISSING = "(missing)"
LENGTH_TERCILES = ("short", "medium", "long")


@dataclass(frozen=True)
class SliceSpec:
    """How to test: the smallest slice that gets a test, the margin (relative to the
    baseline's mean), the bootstrap resamples and seed, the margin's floor and the level
    (settings give the first five: ``min_slice_size``, ``regression_margin``,
    ``bootstrap_*``, ``regression_margin_floor``)."""

    min_slice_size: int
    relative_margin: float
    resamples: int
    seed: int
    margin_floor: float
    level: float = 0.95


PROMPT_CHARS = "prompt_chars"
"""A prompt's length in characters, in place of the prompt (see :func:`slice_members`)."""


@dataclass(frozen=True)
class Slicing:
    """The slices of a partition's rows: per slice key its values (sorted), and for every
    row the index of its value under each key."""

    values: dict[str, list[str]]
    codes: dict[str, np.ndarray]

    @classmethod
    def encoded(cls, keys: Mapping[str, tuple[Sequence[object], np.ndarray]]) -> Slicing:
        """From each key's distinct raw values and every row's index into them (a
        dictionary encoding, e.g. Arrow's): the raw values become slice values by
        :func:`label`, so that None, NaN and "" are one ``(missing)`` slice."""
        values, codes = {}, {}
        for key, (raw, indices) in keys.items():
            labels = [label(v) for v in raw]
            values[key] = sorted(set(labels))
            position = {v: i for i, v in enumerate(values[key])}
            remap = np.array([position[v] for v in labels], dtype="int32")
            codes[key] = remap[np.asarray(indices, dtype="int64")]
        return cls(values, codes)

    @classmethod
    def of(cls, labels: Mapping[str, Sequence[object]]) -> Slicing:
        """From every row's raw value under each key."""
        encoded = {}
        for key, raw in labels.items():
            indices, uniques = pd.factorize(
                pd.Series(list(raw), dtype=object), use_na_sentinel=False
            )
            encoded[key] = (list(uniques), indices)
        return cls.encoded(encoded)

    def slices(self) -> list[tuple[str, str]]:
        """Every (slice key, value), in the order of their group indices."""
        return [(key, value) for key, values in self.values.items() for value in values]

    def groupings(self, rows: slice | np.ndarray) -> list[np.ndarray]:
        """Per key, the group index (into :meth:`slices`) of ``rows`` (a slice or
        positions)."""
        out, offset = [], 0
        for key, values in self.values.items():
            out.append(self.codes[key][rows].astype("int64") + offset)
            offset += len(values)
        return out

    def sizes(self) -> dict[tuple[str, str], int]:
        """Rows per slice."""
        return {
            (key, value): int(count)
            for key, values in self.values.items()
            for value, count in zip(
                values, np.bincount(self.codes[key], minlength=len(values)), strict=True
            )
        }


def length_terciles(lengths: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Each prompt's tercile of ``lengths`` (0 short, 1 medium, 2 long), cut at the 1/3
    and 2/3 quantiles (linear interpolation) of the partition's lengths, or of those
    where ``among`` is true; a length on a cut goes below it."""
    cut_from = lengths if among is None else lengths[among]
    if not len(cut_from):
        return np.zeros(len(lengths), dtype="int64")
    cuts = np.quantile(cut_from, [1 / 3, 2 / 3])
    return np.searchsorted(cuts, lengths, side="left")


def slice_members(
    examples: pd.DataFrame, slice_by: Sequence[str], earlier_ids: set[str]
) -> Slicing:
    """The slices of ``examples``' rows (:class:`Slicing`).

    ``examples`` has ``example_id``, ``task``, ``prompt`` (or ``prompt_chars``, its
    length) and ``metadata`` (a mapping or a list of pairs per row). A ``slice_by`` field
    no row carries raises ValueError naming it; a row without the field goes to the value
    ``(missing)``."""
    n = len(examples)
    labels: dict[str, Sequence[object]] = {ALL: [ALL] * n}
    metadata = [as_mapping(m) for m in examples.get(Col.METADATA, [None] * n)]
    for key in slice_by:
        if key == Col.TASK:
            labels[key] = list(examples[Col.TASK])
            continue
        if not any(key in m for m in metadata):
            raise ValueError(
                f"slice_by names {key!r}, which no example has (task, or a metadata field)"
            )
        labels[key] = [m.get(key) for m in metadata]
    if PROMPT_CHARS in examples:
        lengths = examples[PROMPT_CHARS].to_numpy()
    else:
        lengths = examples[Col.PROMPT].astype(str).str.len().to_numpy()
    labels[PROMPT_LENGTH] = [LENGTH_TERCILES[t] for t in length_terciles(lengths)]
    labels[RECURRING] = [RECURRING if i in earlier_ids else "new" for i in examples[Col.EXAMPLE_ID]]
    return Slicing.of(labels)


def as_mapping(value: object) -> Mapping[str, object]:
    """A row's metadata as a mapping: pyarrow map columns come back from ``to_pandas()``
    as lists of (key, value) pairs; None is no metadata."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list | tuple | np.ndarray):
        return dict(value)
    return {}


def slice_name(key: str, value: str) -> str:
    """How a slice is named to a reader: ``all``, or ``key=value``."""
    return ALL if key == ALL else f"{key}={value}"


def label(value: object) -> str:
    """A slice value: the text of ``value``, or ``(missing)`` for None, NaN or ""."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value)


SLICE_COLUMNS: tuple[str, ...] = tuple(
    c for c in METRIC_SLICES.columns if c not in METRIC_SLICES.partition_by
)


def slice_values(own: np.ndarray, other: np.ndarray | None, geometric: np.ndarray) -> np.ndarray:
    """What :func:`slice_sums` counts for slices, from rows × metrics of the candidate
    and the baseline (NaN where missing): the candidate's values and the paired
    differences (both resampled), a column of ones (the slice's rows) and the baseline's
    values where both have one, each on the log scale for geometric metrics."""
    own, other = _scaled(own, geometric), _scaled(other, geometric) if other is not None else None
    if other is None:
        other = np.full_like(own, np.nan)
    both = ~np.isnan(own) & ~np.isnan(other)
    return np.hstack(
        [
            own,
            np.where(both, own - other, np.nan),
            np.ones((len(own), 1)),
            np.where(both, other, np.nan),
        ]
    )


def _scaled(values: np.ndarray, geometric: np.ndarray) -> np.ndarray:
    values = np.array(values, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        values[:, geometric] = np.log(values[:, geometric])
    values[~np.isfinite(values)] = np.nan
    return values


def geometric_of(metrics: Sequence[str]) -> np.ndarray:
    """Which of ``metrics`` are compared on the log scale."""
    return np.array([METRICS[m].aggregation == GEOMETRIC for m in metrics], dtype=bool)


def slice_sums(slicing: Slicing, metrics: int, spec: SliceSpec) -> BootstrapSums:
    """The accumulator of :func:`slice_values` over ``slicing``'s slices for ``metrics``
    metrics: only the candidate's values and the differences are resampled."""
    return BootstrapSums(
        len(slicing.slices()), 3 * metrics + 1, spec.resamples, spec.seed, resampled=2 * metrics
    )


def metric_slices(
    candidate: pd.DataFrame,
    baseline: pd.DataFrame | None,
    slicing: Slicing,
    example_ids: Sequence[str],
    metrics: Sequence[str],
    spec: SliceSpec,
) -> pd.DataFrame:
    """One row per (slice, metric): columns :data:`SLICE_COLUMNS`.

    ``candidate`` and ``baseline`` are per-example metric tables indexed by example id;
    ``slicing`` gives the slices of the rows of ``example_ids``. Without a baseline (or
    for the baseline itself) the comparison columns are NaN and the verdict is null.
    Slices under ``spec.min_slice_size`` pairs get no test: verdict ``inconclusive``."""
    ids = pd.Index(example_ids)
    geometric = geometric_of(metrics)
    own = _matrix(candidate, ids, metrics)
    other = _matrix(baseline, ids, metrics) if baseline is not None else None
    sums = slice_sums(slicing, len(metrics), spec)
    sums.add(slice_values(own, other, geometric), slicing.groupings(slice(None)), row_keys(ids))
    return slice_table(sums, slicing, metrics, spec, compared=baseline is not None)


def slice_table(
    sums: BootstrapSums,
    slicing: Slicing,
    metrics: Sequence[str],
    spec: SliceSpec,
    compared: bool,
) -> pd.DataFrame:
    """The slice table (:data:`SLICE_COLUMNS`) from the rows counted into ``sums``
    (:func:`slice_values`, grouped by ``slicing``); slices with no row are left out."""
    k = len(metrics)
    geometric = geometric_of(metrics)
    mean, std, draws = sums.mean(), sums.std(), sums.draws()
    own, diff, base = slice(0, k), slice(k, 2 * k), slice(2 * k + 1, 3 * k + 1)
    rows = []
    for g, (key, value) in enumerate(slicing.slices()):
        if not sums.count[g, 2 * k]:
            continue
        low, high = percentile_interval(draws[g][:, own], spec.level)
        tested = 2 if key == ALL else max(2, spec.min_slice_size)
        comparison = (
            _paired(sums.count[g, diff], mean[g, diff], mean[g, base], std[g, diff],
                    draws[g][:, diff], metrics, geometric, tested, spec)
            if compared
            else None
        )  # fmt: skip
        for j, metric in enumerate(metrics):
            back = np.exp if geometric[j] else (lambda x: x)
            row = {
                Slc.KEY: key, Slc.VALUE: value, Agg.METRIC: metric,
                Agg.COUNT: int(sums.count[g, own][j]), Agg.MEAN: float(back(mean[g, own][j])),
                Agg.CI_LOW: float(back(low[j])), Agg.CI_HIGH: float(back(high[j])),
            }  # fmt: skip
            row.update(comparison[j] if comparison is not None else _no_comparison())
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(SLICE_COLUMNS))
    if compared and len(frame):
        frame[Slc.Q_VALUE] = bh_q_values(frame[Slc.P_VALUE].to_numpy())
        frame[Slc.VERDICT] = [_verdict_of(r, spec) for r in frame.to_dict("records")]
    return frame


def _matrix(table: pd.DataFrame, ids: pd.Index, metrics: Sequence[str]) -> np.ndarray:
    """Rows in ``ids`` order × metrics, NaN where missing."""
    aligned = table.reindex(ids)
    return np.column_stack(
        [pd.to_numeric(aligned[m], errors="coerce").to_numpy("float64") if m in aligned
         else np.full(len(ids), np.nan) for m in metrics]
    ) if metrics else np.empty((len(ids), 0))  # fmt: skip


def _paired(
    pairs: np.ndarray,
    observed: np.ndarray,
    base: np.ndarray,
    sd: np.ndarray,
    draws: np.ndarray,
    metric_names: Sequence[str],
    geometric: np.ndarray,
    min_pairs: int,
    spec: SliceSpec,
) -> list[dict[str, float]]:
    """Per metric: the paired comparison on the rows where both have a value (log scale
    for geometric metrics; their baseline mean is reported back on the metric's scale),
    from the pairs' count, mean difference, baseline mean and standard deviation of the
    differences, and the bootstrap means of the differences (``draws``: resamples ×
    metrics)."""
    low, high = percentile_interval(draws, spec.level)
    p = bootstrap_p_values(draws, observed)
    alpha = 1 - spec.level
    out = []
    for j in range(len(metric_names)):
        # a metric with no better direction (a token count) is described, not tested: it
        # has no verdict to give and would only widen the Benjamini-Hochberg family
        tested = pairs[j] >= min_pairs and METRICS[metric_names[j]].better != NEITHER
        baseline_mean = float(np.exp(base[j])) if geometric[j] else float(base[j])
        margin = margin_of(metric_names[j], baseline_mean, spec.relative_margin, spec.margin_floor)
        sd_j = float(sd[j]) if pairs[j] > 1 else math.nan
        out.append({
            Slc.BASELINE_MEAN: baseline_mean, Slc.DIFF: float(observed[j]),
            Slc.DIFF_CI_LOW: float(low[j]), Slc.DIFF_CI_HIGH: float(high[j]),
            Slc.P_VALUE: float(p[j]) if tested else math.nan,
            Slc.Q_VALUE: math.nan, Slc.MDE: mde(sd_j, int(pairs[j]), alpha),
            Slc.N_NEEDED: n_needed(sd_j, margin, alpha),
            Slc.VERDICT: None,
        })  # fmt: skip
    return out


def _no_comparison() -> dict[str, object]:
    compared = SLICE_COLUMNS[SLICE_COLUMNS.index(Slc.BASELINE_MEAN) :]
    none: dict[str, object] = {name: math.nan for name in compared}
    return none | {Slc.VERDICT: None}


def _verdict_of(row: Mapping[str, object], spec: SliceSpec) -> str:
    """A tested slice's verdict from its interval and the margin; a regression or an
    improvement must also survive Benjamini–Hochberg at the level."""
    if math.isnan(row[Slc.P_VALUE]):  # type: ignore[arg-type]
        return Verdict.INCONCLUSIVE
    metric = str(row[Agg.METRIC])
    margin = margin_of(
        metric, float(row[Slc.BASELINE_MEAN]), spec.relative_margin, spec.margin_floor
    )  # type: ignore[arg-type]
    found = verdict(metric, row[Slc.DIFF_CI_LOW], row[Slc.DIFF_CI_HIGH], margin)  # type: ignore[arg-type]
    if found in (Verdict.REGRESSION, Verdict.IMPROVEMENT) and not (
        row[Slc.Q_VALUE] <= 1 - spec.level  # type: ignore[operator]
    ):
        return Verdict.INCONCLUSIVE
    return found


def margin_of(metric: str, baseline_mean: float, relative_margin: float, floor: float) -> float:
    """The margin of indifference of a comparison, in the units of ``diff``, at least
    ``floor``; NaN without a baseline mean. ``relative_margin`` × |baseline mean| for an
    arithmetic metric; for a geometric one (compared on the log scale) the log of the
    ratio ``1 + relative_margin``, the same share of its (geometric) mean whatever that
    mean is."""
    if not math.isfinite(baseline_mean):
        return math.nan
    if METRICS[metric].aggregation == GEOMETRIC:
        return max(math.log1p(relative_margin), floor)
    return max(relative_margin * abs(baseline_mean), floor)


def regressions(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The rows of a partition's slice table, for ``metrics``, whose verdict is a
    regression (which already survived Benjamini–Hochberg), ``all`` first, then by q."""
    found = table[(table[Slc.VERDICT] == Verdict.REGRESSION) & table[Agg.METRIC].isin(metrics)]
    order = (found[Slc.KEY] != ALL).astype(int)
    return found.assign(_order=order).sort_values(["_order", Slc.Q_VALUE]).drop(columns="_order")


def power_shortfalls(
    table: pd.DataFrame, metrics: Sequence[str], relative_margin: float, floor: float
) -> pd.DataFrame:
    """Per metric of ``metrics`` compared on the slice ``all``: its ``count``, ``mde``,
    the ``margin`` and ``n_needed``, and ``short`` — whether the mde exceeds the margin
    (the partition could not have shown a regression of the size the margin names)."""
    rows = table[(table[Slc.KEY] == ALL) & table[Agg.METRIC].isin(metrics)]
    rows = rows[rows[Slc.DIFF].notna()]
    margins = [
        margin_of(m, b, relative_margin, floor)
        for m, b in zip(rows[Agg.METRIC], rows[Slc.BASELINE_MEAN], strict=True)
    ]
    out = rows[[Agg.METRIC, Agg.COUNT, Slc.MDE, Slc.N_NEEDED]].assign(margin=margins)
    out["short"] = ~(out[Slc.MDE] <= out["margin"])
    return out.reset_index(drop=True)
