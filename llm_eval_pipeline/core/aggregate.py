"""The project's statistics, in one place: summaries with bootstrap confidence intervals,
the paired comparison with the baseline, verdicts, and for slices the vectorised
bootstrap, bootstrap p-values, Benjamini-Hochberg q-values and the minimum detectable
effect. Renderers and checks use these; none recomputes them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.cost import Prices
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    GEOMETRIC_METRICS,
    LOWER_IS_BETTER,
    NEUTRAL_METRICS,
    Agg,
    Col,
)

ROW_BLOCK = 4096
"""Rows counted at a time: 1,000 resamples of a block are 16 MB of counts, whatever the
partition's size."""


def _poisson_one_table() -> np.ndarray:
    cdf = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])
    return np.searchsorted(cdf, (np.arange(65536) + 0.5) / 65536, side="right").astype("uint8")


_POISSON_ONE = _poisson_one_table()
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014), in place on uint64."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def row_keys(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """A 64-bit key per row from its example id (pandas' ``hash_array``, SipHash with a
    fixed key): the same id gets the same key on every run and machine."""
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)


def poisson_counts(keys: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """How often each row (by its 64-bit key, :func:`row_keys`) appears in each of
    ``resamples`` bootstrap resamples (resamples × rows, float32), by the Poisson
    bootstrap: every count is Poisson(1), independently (Hanley & MacGibbon 2006,
    "Creating non-parametric bootstrap samples using Poisson frequencies"; Chamandy et al.
    2012, "Estimating uncertainty for massive data streams"). It approximates the
    multinomial resampling of Efron's bootstrap, and unlike it, the counts of any subset
    of the rows are themselves a Poisson bootstrap of that subset, so rows can be counted
    as they stream past: one pass serves a partition, every slice of it and every metric.

    A row's counts are a function of its key and the seed alone (a counter-based
    generator, as in Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"):
    each 16-bit lane of SplitMix64(stream_j XOR key), through the inverse CDF of
    Poisson(1) (each probability within 2^-16 of the exact one; counts above 8,
    probability 1e-6, are not drawn). Whatever order or batches the rows come in, or
    whichever task counts them, the intervals are the same."""
    lanes = -(-resamples // 4)
    base = _splitmix(np.array([seed], dtype=np.uint64))[0]
    streams = _splitmix(base + np.arange(1, lanes + 1, dtype=np.uint64) * _GOLDEN)
    mixed = _splitmix(streams[:, None] ^ np.asarray(keys, dtype=np.uint64)[None, :])
    sixteen = np.ascontiguousarray(mixed.T).view(np.uint16)[:, :resamples]
    return _POISSON_ONE[sixteen.T].astype("float32")


class BootstrapSums:
    """A streaming Poisson bootstrap of column means within groups of rows: rows arrive
    in batches (``add``), and what is kept is per group and column the exact count, sum
    and sum of squares of the non-NaN values, and per resample the count-weighted sum and
    size of the first ``resampled`` columns (all by default; the others get exact
    statistics only). Memory is groups × resamples × columns, whatever the rows;
    accumulators of disjoint rows add up with ``merge``. A row's counts come from its key
    (:func:`poisson_counts`)."""

    def __init__(
        self, groups: int, columns: int, resamples: int, seed: int, resampled: int | None = None
    ) -> None:
        self.resamples, self.seed = resamples, seed
        self.resampled = columns if resampled is None else resampled
        self.rows = 0
        self.count = np.zeros((groups, columns))
        self.total = np.zeros((groups, columns))
        self.squares = np.zeros((groups, columns))
        self.sums = np.zeros((groups, resamples, self.resampled))
        self.sizes = np.zeros((groups, resamples, self.resampled))

    def add(
        self, values: np.ndarray, groupings: Sequence[np.ndarray], keys: np.ndarray | None = None
    ) -> None:
        """Count ``values`` (rows × columns, NaN where a row has no value) into the groups:
        each of ``groupings`` gives every row its group (an index below ``groups``) or -1
        for none of that grouping's groups. ``keys``: each row's key (:func:`row_keys`);
        without them, rows are keyed by the order they were added in."""
        if keys is None:
            keys = np.arange(self.rows, self.rows + len(values), dtype=np.uint64)
        for start in range(0, len(values), ROW_BLOCK):
            stop = min(len(values), start + ROW_BLOCK)
            counts = poisson_counts(keys[start:stop], self.resamples, self.seed)
            self._add(values[start:stop], [g[start:stop] for g in groupings], counts)
        self.rows += len(values)

    def _add(self, values: np.ndarray, groupings: list[np.ndarray], counts: np.ndarray) -> None:
        present = ~np.isnan(values)
        filled = np.where(present, values, 0.0)
        columns = self.resampled
        both = np.hstack([filled[:, :columns], present[:, :columns]]).astype("float32")
        for groups in groupings:
            order = np.argsort(groups, kind="stable")
            ordered = groups[order]
            runs = np.flatnonzero(np.diff(ordered)) + 1
            whole = ordered[0] == ordered[-1]
            # one group for every row (the slice "all"): the counts as they are, no copy
            shuffled = counts if whole else counts[:, order]
            for lo, hi in zip([0, *runs], [*runs, len(order)], strict=True):
                group = ordered[lo]
                if group < 0:
                    continue
                rows = order[lo:hi]
                sums = shuffled[:, lo:hi] @ both[rows]
                self.sums[group] += sums[:, :columns]
                self.sizes[group] += sums[:, columns:]
                self.count[group] += present[rows].sum(axis=0)
                self.total[group] += filled[rows].sum(axis=0)
                self.squares[group] += (filled[rows] ** 2).sum(axis=0)

    def merge(self, other: BootstrapSums) -> None:
        """Add the rows another accumulator counted (rows of their own)."""
        for name in ("count", "total", "squares", "sums", "sizes"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.rows += other.rows

    def mean(self) -> np.ndarray:
        """Groups × columns: the mean of the non-NaN values (NaN with none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.total / self.count

    def std(self) -> np.ndarray:
        """Groups × columns: the sample standard deviation (ddof=1; NaN below 2 values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = (self.squares - self.total**2 / self.count) / (self.count - 1)
        return np.sqrt(np.clip(variance, 0.0, None))

    def draws(self) -> np.ndarray:
        """Groups × resamples × the resampled columns: the bootstrap means (NaN for a
        resample that drew none of a group's values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.sizes


def bootstrap_ci(
    values: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron & Tibshirani 1993;
    resampled by :class:`BootstrapSums`, seeded): the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resample means. NaN values are ignored; with no
    value the interval is (nan, nan)."""
    data = np.asarray(values, dtype="float64")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    sums = BootstrapSums(1, 1, resamples, seed)
    sums.add(data[:, None], [np.zeros(data.size, dtype="int64")])
    low, high = percentile_interval(sums.draws()[0], level)
    return float(low[0]), float(high[0])


NO_SUMMARY = {Agg.COUNT: 0} | dict.fromkeys(
    (Agg.MEAN, Agg.STD, Agg.P50, Agg.P90, Agg.P95, Agg.CI_LOW, Agg.CI_HIGH), math.nan
)


Batches = Callable[[Sequence[str]], Iterable[pd.DataFrame]]
"""A table read in batches: given column names, its rows with those of the columns it
has, as DataFrames, in the same order on every call."""


def frame_batches(frame: pd.DataFrame) -> Batches:
    """A DataFrame as :data:`Batches` (one batch)."""
    return lambda columns: [frame[[c for c in columns if c in frame]]]


def _floats(batch: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(batch[name], errors="coerce").to_numpy("float64", na_value=np.nan)


def _metric_values(batch: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: _floats(batch, name) for name in ALL_METRIC_COLUMNS if name in batch}


OPERATIONAL = ("error_rate", Col.LATENCY_MS, Col.PROMPT_TOKENS, Col.OUTPUT_TOKENS)
"""The per-row operational metrics ``aggregate_partition`` summarises from generations."""


def _generation_values(batch: pd.DataFrame) -> dict[str, np.ndarray]:
    failed = batch[Col.ERROR].notna().to_numpy()
    values = {"error_rate": failed.astype("float64")}
    for name in OPERATIONAL[1:]:
        if name in batch:
            values[name] = np.where(failed, np.nan, _floats(batch, name))
    return values


def _summaries(
    batches: Batches,
    names: Sequence[str],
    derive: Callable[[pd.DataFrame], dict[str, np.ndarray]],
    needs: Sequence[str],
    resamples: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """The summary of each of ``names`` that has a value (``derive`` turns a batch of the
    columns ``needs`` and ``names`` into each name's values), in two passes over
    ``batches``: one that counts every value into one :class:`BootstrapSums` (the
    geometric metrics' logs; rows keyed by example id), then one per metric for its
    percentiles, so that no more than one column of the partition is in memory at a
    time."""
    geometric = np.array([name in GEOMETRIC_METRICS for name in names], dtype=bool)
    sums = BootstrapSums(1, len(names), resamples, seed)
    for batch in batches([Col.EXAMPLE_ID, *needs, *names]):
        derived = derive(batch)
        matrix = np.column_stack(
            [derived.get(name, np.full(len(batch), np.nan)) for name in names]
        ) if names else np.empty((len(batch), 0))  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):
            matrix[:, geometric] = np.log(matrix[:, geometric])
        keys = row_keys(batch[Col.EXAMPLE_ID].to_numpy()) if Col.EXAMPLE_ID in batch else None
        sums.add(matrix, [np.zeros(len(batch), dtype="int64")], keys)
    mean, std = sums.mean()[0], sums.std()[0]
    low, high = percentile_interval(sums.draws()[0])
    out = {}
    for j, name in enumerate(names):
        if not sums.count[0, j]:
            continue
        values = np.concatenate([derive(batch)[name] for batch in batches([*needs, name])])
        values = values[~np.isnan(values)]
        back = np.exp if geometric[j] else float
        p50, p90, p95 = np.quantile(values, [0.5, 0.9, 0.95])
        out[name] = {
            Agg.COUNT: int(sums.count[0, j]), Agg.MEAN: float(back(mean[j])),
            Agg.STD: float(std[j]) if sums.count[0, j] > 1 else math.nan,
            Agg.P50: float(p50), Agg.P90: float(p90), Agg.P95: float(p95),
            Agg.CI_LOW: float(back(low[j])), Agg.CI_HIGH: float(back(high[j])),
        }  # fmt: skip
    return out


def _sums(batches: Batches, columns: Sequence[str]) -> tuple[int, list[float]]:
    """Rows where any of ``columns`` has a value, and the sums of ``columns`` over them
    (none without every column)."""
    rows, totals = 0, [0.0] * len(columns)
    for batch in batches(columns):
        if not all(c in batch for c in columns):
            return 0, totals
        counted = batch[list(columns)].notna().any(axis=1)
        rows += int(counted.sum())
        for i, name in enumerate(columns):
            totals[i] += float(pd.to_numeric(batch.loc[counted, name]).fillna(0).sum())
    return rows, totals


def _throughput(generations: Batches) -> tuple[int, float, float]:
    """Rows that succeeded with tokens and a latency, their output tokens and seconds."""
    rows, tokens, seconds = 0, 0.0, 0.0
    for batch in generations([Col.ERROR, Col.OUTPUT_TOKENS, Col.LATENCY_MS]):
        if Col.OUTPUT_TOKENS not in batch or Col.LATENCY_MS not in batch:
            return 0, 0.0, 0.0
        timed = (
            batch[Col.ERROR].isna()
            & batch[Col.OUTPUT_TOKENS].notna()
            & batch[Col.LATENCY_MS].notna()
        )
        rows += int(timed.sum())
        tokens += float(batch.loc[timed, Col.OUTPUT_TOKENS].sum())
        seconds += float(batch.loc[timed, Col.LATENCY_MS].sum()) / 1000
    return rows, tokens, seconds


def aggregate_partition(
    metrics: Batches | pd.DataFrame,
    generations: Batches | pd.DataFrame,
    resamples: int = 1000,
    seed: int = 0,
    prices: Prices | None = None,
    judge_prices: Prices | None = None,
) -> pd.DataFrame:
    """One row per metric for one day×model partition (columns ``Agg.METRIC``, the
    summary fields and ``Agg.ROWS``).

    Every metric column of ``metrics`` (an ``example_metrics`` partition) with at least one
    value is summarised: count, mean, sample standard deviation (ddof=1, NaN below 2
    values), median, 90th and 95th percentiles (linear interpolation) and the 95%
    percentile bootstrap interval of the mean (:class:`BootstrapSums`) of its non-NaN
    values. Perplexities (``GEOMETRIC_METRICS``) are summarised by their geometric mean:
    the mean and its interval are taken on the natural log and mapped back, and the
    standard deviation is that of the logs; the percentiles are of the values themselves.

    From ``generations`` the operational metrics: ``error_rate`` (1.0 for a failed row,
    else 0.0), ``latency_ms``, ``prompt_tokens`` and ``output_tokens`` of the rows that
    succeeded, and ``tokens_per_s`` = sum(output_tokens) / sum(latency_ms) × 1000, one
    value per partition (count = rows it covers, no interval). With ``prices``,
    ``cost_usd``: every row's tokens (failed rows too, as an API bills them) at those
    prices, one total per partition; with ``judge_prices``, ``judge_cost_usd`` from the
    judge's token columns (``core.cost``).

    Either table may be given as :data:`Batches`, read a batch at a time: the memory
    needed is that of a batch and of one column, not of the partition."""
    metrics = frame_batches(metrics) if isinstance(metrics, pd.DataFrame) else metrics
    generations = (
        frame_batches(generations) if isinstance(generations, pd.DataFrame) else generations
    )
    summaries = _summaries(metrics, ALL_METRIC_COLUMNS, _metric_values, (), resamples, seed)
    summaries |= _summaries(
        generations, OPERATIONAL, _generation_values, (Col.ERROR,), resamples, seed
    )
    out = [{Agg.METRIC: name, **summary} for name, summary in summaries.items()]
    rows = int(summaries["error_rate"][Agg.COUNT]) if "error_rate" in summaries else 0
    timed, produced, seconds = _throughput(generations)
    if timed and seconds > 0:
        total = {Agg.COUNT: timed, Agg.MEAN: produced / seconds}
        out.append({**NO_SUMMARY, Agg.METRIC: "tokens_per_s", **total})
    tokens = [Col.PROMPT_TOKENS, Col.OUTPUT_TOKENS]
    judge_tokens = ["judge_prompt_tokens", "judge_output_tokens"]
    for name, table, columns, price in (
        ("cost_usd", generations, tokens, prices),
        ("judge_cost_usd", metrics, judge_tokens, judge_prices),
    ):
        if price is not None:
            counted, sums = _sums(table, columns)
            if counted:
                total = {Agg.COUNT: counted, Agg.MEAN: price.cost(*sums)}
                out.append({**NO_SUMMARY, Agg.METRIC: name, **total})
    frame = pd.DataFrame(out)
    frame[Agg.ROWS] = rows
    return frame


class Verdict:
    """What a difference's interval says, against a margin of indifference ``m`` (in the
    metric's units): ``regression`` or ``improvement`` when the whole interval lies beyond
    ``m`` on the worse or better side, ``no_change`` when it lies within ``[-m, m]``,
    ``inconclusive`` otherwise (or without an interval, or for a metric with no better
    direction that did not stay within the margin)."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NO_CHANGE = "no_change"
    INCONCLUSIVE = "inconclusive"


def verdict(metric: str, ci_low: float, ci_high: float, margin: float) -> str:
    """The :class:`Verdict` of a difference (candidate − baseline) whose confidence
    interval is ``[ci_low, ci_high]``; ``margin`` ≥ 0 in its units."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return Verdict.INCONCLUSIVE
    if -margin <= ci_low and ci_high <= margin:
        return Verdict.NO_CHANGE
    if metric in NEUTRAL_METRICS:
        return Verdict.INCONCLUSIVE
    lower_better = metric in LOWER_IS_BETTER
    worse_at_least = ci_low if lower_better else -ci_high
    better_at_least = -ci_high if lower_better else ci_low
    if worse_at_least > margin:
        return Verdict.REGRESSION
    if better_at_least > margin:
        return Verdict.IMPROVEMENT
    return Verdict.INCONCLUSIVE


def valid_range(metric: str) -> tuple[float, float]:
    """The values a metric can take by its definition (its ``MetricSpec``)."""
    return METRICS[metric].valid_range


def out_of_range(metrics: pd.DataFrame) -> dict[str, int]:
    """Per metric column of ``metrics``, how many values lie outside :func:`valid_range`
    (NaN is not counted: a null metric carries its reason in ``metric_notes``)."""
    counts = {}
    for name in ALL_METRIC_COLUMNS:
        if name in metrics:
            low, high = valid_range(name)
            values = metrics[name].to_numpy(dtype="float64", na_value=np.nan)
            bad = int(((values < low - 1e-9) | (values > high + 1e-9)).sum())
            if bad:
                counts[name] = bad
    return counts


POWER = 0.8
"""The power at which ``mde`` and ``n_needed`` are stated."""


def mde(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """Minimum detectable effect of a paired mean difference: the smallest true difference
    a two-sided test at level ``alpha`` detects with probability ``power``, by the normal
    approximation ``(z_{1-alpha/2} + z_power) * sd / sqrt(n)`` (e.g. Cohen 1988). NaN for
    fewer than two pairs."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * sd / math.sqrt(n)


def n_needed(sd: float, margin: float, alpha: float = 0.05, power: float = POWER) -> float:
    """Pairs needed to detect a true difference of ``margin``: ``((z_{1-alpha/2} + z_power)
    * sd / margin)^2``, rounded up; NaN when the margin is 0 or the sd unknown."""
    if not margin > 0 or not math.isfinite(sd):
        return math.nan
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return float(math.ceil((z * sd / margin) ** 2))


def bh_q_values(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (Benjamini & Hochberg 1995): for the i-th
    smallest of m p-values, ``min_{j >= i} p_(j) * m / j``, capped at 1. Rejecting where
    ``q <= level`` keeps the false-discovery rate at or under ``level`` (independent or
    positively dependent tests). NaN p-values are not tests and get NaN."""
    p = np.asarray(p_values, dtype="float64")
    q = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if not tested.size:
        return q
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` Poisson-bootstrap means (:func:`poisson_counts`, the rows keyed at
    random from ``rng``) of each column of ``values`` (rows × columns, NaN where a row has
    no value): the count-weighted means over each column's non-NaN rows. Resamples ×
    columns; NaN for a resample that drew none of a column's rows."""
    keys = rng.integers(0, 2**63, size=values.shape[0], dtype=np.int64).astype(np.uint64)
    counts = poisson_counts(keys, resamples, int(rng.integers(0, 2**32)))
    present = ~np.isnan(values)
    sums = counts @ np.where(present, values, 0.0).astype("float32")
    sizes = counts @ present.astype("float32")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / sizes).astype("float64")


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the draws
    (NaN draws ignored)."""
    alpha = (1 - level) / 2
    if not draws.size:
        return np.array([]), np.array([])
    # np.quantile of the columns without NaN at once (nanquantile goes column by column)
    gaps = np.isnan(draws).any(axis=0)
    low, high = np.full(draws.shape[1], np.nan), np.full(draws.shape[1], np.nan)
    if not gaps.all():
        low[~gaps], high[~gaps] = np.quantile(draws[:, ~gaps], [alpha, 1 - alpha], axis=0)
    if gaps.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, as meant
            low[gaps], high[gaps] = np.nanquantile(draws[:, gaps], [alpha, 1 - alpha], axis=0)
    return low, high


def bootstrap_p_values(draws: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of each column's mean against 0: the share of the
    bootstrap means, centred on the observed mean (the null shifted onto the data), at
    least as far from 0 as the observed mean, with the usual +1 correction (Davison &
    Hinkley 1997, ch. 4): ``(1 + #{|b - d| >= |d|}) / (1 + B)``."""
    centred = np.abs(draws - observed)
    extreme = (centred >= np.abs(observed) - 1e-15).sum(axis=0)
    valid = (~np.isnan(draws)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (1.0 + extreme) / (1.0 + valid)
    p[np.isnan(observed) | (valid == 0)] = np.nan
    return p
