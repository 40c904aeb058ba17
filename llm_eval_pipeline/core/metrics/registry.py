"""Every metric's :class:`~llm_eval_pipeline.core.metrics.spec.MetricSpec`, collected
from the modules that define them, in the order of the ``example_metrics`` columns.

``SCORED_GROUPS`` are the groups ``score_batch`` computes per example; the
``operational`` group is aggregated from ``generations``."""

from __future__ import annotations

from llm_eval_pipeline.core.metrics import (
    correctness,
    hallucination,
    judge,
    operational,
    perplexity,
    rouge,
)
from llm_eval_pipeline.core.metrics.spec import MetricSpec

_MODULES = (rouge, correctness, judge, perplexity, hallucination)
SCORED_GROUPS: tuple[str, ...] = tuple(module.GROUP for module in _MODULES)
METRICS: dict[str, MetricSpec] = {
    spec.name: spec for module in (*_MODULES, operational) for spec in module.SPECS
}


def metric(name: str) -> MetricSpec:
    """The spec of metric ``name``; KeyError names the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a metric (known: {sorted(METRICS)})") from None


def names(group: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in METRICS.values() if spec.group == group)
