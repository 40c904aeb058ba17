"""Aggregates of per-example metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    rng = np.random.default_rng(seed)
    means = rng.choice(data, size=(resamples, data.size), replace=True).mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)
