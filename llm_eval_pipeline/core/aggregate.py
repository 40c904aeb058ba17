"""The project's statistics, in one place: summaries with bootstrap confidence intervals,
the paired comparison with the baseline, verdicts, and for slices the vectorised
bootstrap, bootstrap p-values, Benjamini-Hochberg q-values and the minimum detectable
effect. Renderers and checks use these; none recomputes them."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
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

# bounds the memory of one bootstrap draw (resamples × values) to ~16 MB of float64
_MAX_DRAW = 2_000_000


def _bootstrap_means(data: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _MAX_DRAW // max(1, data.size))
    means = []
    for start in range(0, resamples, per_chunk):
        size = min(per_chunk, resamples - start)
        means.append(data[rng.integers(0, data.size, size=(size, data.size))].mean(axis=1))
    return np.concatenate(means)


def bootstrap_ci(
    values: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (Efron & Tibshirani 1993):
    resample the values with replacement ``resamples`` times (seeded), take the mean of
    each resample, and return the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.
    NaN values are ignored; with no value the interval is (nan, nan)."""
    data = np.asarray(values, dtype="float64")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    means = _bootstrap_means(data, resamples, seed)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def summarize(
    values: Sequence[float], resamples: int = 1000, seed: int = 0, geometric: bool = False
) -> dict[str, float]:
    """Count, mean, sample standard deviation (ddof=1, NaN below 2 values), median, 90th
    and 95th percentiles (linear interpolation) and the 95% bootstrap CI of the non-NaN values.

    ``geometric``: the mean and its interval are taken on the natural log and mapped back
    (the geometric mean, exp of the mean log), and the standard deviation is that of the
    logs; the percentiles are of the values themselves."""
    data = np.asarray(values, dtype="float64")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return {Agg.COUNT: 0} | dict.fromkeys(
            (Agg.MEAN, Agg.STD, Agg.P50, Agg.P90, Agg.P95, Agg.CI_LOW, Agg.CI_HIGH), math.nan
        )
    scale = np.log(data) if geometric else data
    back = np.exp if geometric else float
    low, high = bootstrap_ci(scale, resamples, seed=seed)
    return {
        Agg.COUNT: int(data.size),
        Agg.MEAN: float(back(scale.mean())),
        Agg.STD: float(scale.std(ddof=1)) if data.size > 1 else math.nan,
        Agg.P50: float(np.quantile(data, 0.5)),
        Agg.P90: float(np.quantile(data, 0.9)),
        Agg.P95: float(np.quantile(data, 0.95)),
        Agg.CI_LOW: float(back(low)),
        Agg.CI_HIGH: float(back(high)),
    }


def aggregate_partition(
    metrics: pd.DataFrame,
    generations: pd.DataFrame,
    resamples: int = 1000,
    seed: int = 0,
    prices: Prices | None = None,
    judge_prices: Prices | None = None,
) -> pd.DataFrame:
    """One row per metric for one day×model partition (columns ``Agg.METRIC``, the
    :func:`summarize` fields and ``Agg.ROWS``).

    Every metric column of ``metrics`` (an ``example_metrics`` partition) with at least one
    value is summarised (perplexities by their geometric mean, see ``GEOMETRIC_METRICS``),
    and from ``generations`` the operational metrics: ``error_rate``
    (1.0 for a failed row, else 0.0), ``latency_ms``, ``prompt_tokens`` and
    ``output_tokens`` of the rows that succeeded, and ``tokens_per_s`` = sum(output_tokens)
    / sum(latency_ms) × 1000, one value per partition (count = rows it covers, no
    interval). With ``prices``, ``cost_usd``: every row's tokens (failed rows too, as an
    API bills them) at those prices, one total per partition; with ``judge_prices``,
    ``judge_cost_usd`` from the judge's token columns (``core.cost``)."""
    rows = len(generations)
    out = []
    for name in ALL_METRIC_COLUMNS:
        if name in metrics and metrics[name].notna().any():
            geometric = name in GEOMETRIC_METRICS
            out.append({Agg.METRIC: name, **summarize(metrics[name], resamples, seed, geometric)})
    failed = generations[Col.ERROR].notna().to_numpy(dtype="float64")
    ok = generations[generations[Col.ERROR].isna()]
    out.append({Agg.METRIC: "error_rate", **summarize(failed, resamples, seed)})
    for name in (Col.LATENCY_MS, Col.PROMPT_TOKENS, Col.OUTPUT_TOKENS):
        if name not in ok:
            continue
        values = ok[name].to_numpy(dtype="float64", na_value=np.nan)
        if (~np.isnan(values)).any():
            out.append({Agg.METRIC: name, **summarize(values, resamples, seed)})
    timed = ok[ok[Col.OUTPUT_TOKENS].notna() & ok[Col.LATENCY_MS].notna()]
    seconds = timed[Col.LATENCY_MS].sum() / 1000
    if len(timed) and seconds > 0:
        out.append(
            {
                **summarize([], resamples, seed),
                Agg.METRIC: "tokens_per_s",
                Agg.COUNT: len(timed),
                Agg.MEAN: float(timed[Col.OUTPUT_TOKENS].sum() / seconds),
            }
        )
    tokens = (Col.PROMPT_TOKENS, Col.OUTPUT_TOKENS)
    judge_tokens = ("judge_prompt_tokens", "judge_output_tokens")
    for name, table, columns, price in (
        ("cost_usd", generations, tokens, prices),
        ("judge_cost_usd", metrics, judge_tokens, judge_prices),
    ):
        if price is not None and all(c in table for c in columns):
            counted = table[list(columns)].notna().any(axis=1)
            if counted.any():
                sums = [float(table.loc[counted, c].fillna(0).sum()) for c in columns]
                total = {Agg.COUNT: int(counted.sum()), Agg.MEAN: price.cost(*sums)}
                out.append({**summarize([], resamples, seed), Agg.METRIC: name, **total})
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


COUNT_BLOCK_CELLS = 4_000_000
"""Resamples × rows drawn at a time (16 MB of float32 counts), so that the bootstrap of
a million-row partition needs megabytes, not the gigabytes of one resamples × rows
matrix."""


def resample_count_blocks(n: int, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """How often each of ``n`` rows appears in each of ``resamples`` bootstrap resamples,
    by the Poisson bootstrap: every count is Poisson(1), independently (Hanley &
    MacGibbon 2006, "Creating non-parametric bootstrap samples using Poisson
    frequencies"; Chamandy et al. 2012, "Estimating uncertainty for massive data
    streams"). It approximates the multinomial resampling of Efron's bootstrap, and
    unlike it, the counts of any subset of the rows are themselves a Poisson bootstrap of
    that subset: one draw serves a partition and every slice of it. Yielded in
    consecutive blocks of resamples (block × n, float32), drawn from ``rng`` in order, so
    the blocks stacked are the counts of one resamples × n draw."""
    per_block = max(1, COUNT_BLOCK_CELLS // max(1, n))
    for start in range(0, resamples, per_block):
        size = min(per_block, resamples - start)
        yield rng.poisson(1.0, size=(size, n)).astype("float32")


def bootstrap_means(
    values: np.ndarray,
    resamples: int,
    rng: np.random.Generator | None,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """``resamples`` bootstrap means of each column of ``values`` (rows × columns, NaN
    where a row has no value): the count-weighted means over each column's non-NaN rows,
    the counts from :func:`resample_count_blocks` (drawn here, block by block, unless
    given: resamples × rows). Shape: resamples × columns; NaN for a resample that drew none of
    a column's rows."""
    if counts is None:
        assert rng is not None
        blocks = resample_count_blocks(values.shape[0], resamples, rng)
        return np.vstack([bootstrap_means(values, 0, None, block) for block in blocks])
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, as meant
        low = np.nanquantile(draws, alpha, axis=0)
        high = np.nanquantile(draws, 1 - alpha, axis=0)
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
