"""The leaderboard of one day: each model's mean and 95% interval per metric, the best
marked. One model of it, rendered three ways: the terminal (``llm-eval status``), the
Dagster markdown of ``metric_aggregates`` and the dashboard."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.metrics.spec import NEITHER
from llm_eval_pipeline.core.schema import Agg, Col


@dataclass(frozen=True)
class Entry:
    """One model's aggregate of one metric."""

    mean: float
    ci_low: float
    ci_high: float
    best: bool

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))


@dataclass(frozen=True)
class Leaderboard:
    day: dt.date | None
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    baseline: str | None
    entries: dict[tuple[str, str], Entry]

    def entry(self, model: str, metric: str) -> Entry | None:
        return self.entries.get((model, metric))

    def label(self, model: str) -> str:
        return f"{model} (baseline)" if model == self.baseline else model

    @classmethod
    def of(
        cls, aggregates: pd.DataFrame, metrics: Sequence[str], baseline: str | None = None
    ) -> Leaderboard:
        """From ``metric_aggregates`` rows: the latest day's, for the ``metrics`` (in
        their order) that any model has a mean for. Best: the highest mean, or the lowest
        where lower is better; none for a metric with no better direction or one model."""
        rows = aggregates[aggregates[Agg.MEAN].notna()] if len(aggregates) else aggregates
        if rows.empty:
            return cls(None, (), (), baseline, {})
        day = max(rows[Col.EVAL_DATE])
        rows = rows[rows[Col.EVAL_DATE] == day]
        present = set(rows[Agg.METRIC])
        shown = tuple(m for m in metrics if m in present)
        models = tuple(sorted(str(m) for m in set(rows[Col.MODEL_ID])))
        entries: dict[tuple[str, str], Entry] = {}
        for metric in shown:
            of_metric = rows[rows[Agg.METRIC] == metric]
            means = {str(r[Col.MODEL_ID]): float(r[Agg.MEAN]) for _, r in of_metric.iterrows()}
            best = _best(metric, means)
            for _, r in of_metric.iterrows():
                model = str(r[Col.MODEL_ID])
                entries[(model, metric)] = Entry(
                    float(r[Agg.MEAN]), float(r[Agg.CI_LOW]), float(r[Agg.CI_HIGH]), model in best
                )
        return cls(day, models, shown, baseline, entries)


def _best(metric: str, means: dict[str, float]) -> set[str]:
    spec = METRICS[metric]
    if spec.better == NEITHER or len(means) < 2:
        return set()
    best = (min if spec.lower_is_better else max)(means.values())
    return {model for model, mean in means.items() if mean == best}
