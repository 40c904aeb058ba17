"""Operational metrics of a day×model partition, from ``generations`` rather than from
scoring (aggregated in ``core.aggregate``)."""

from __future__ import annotations

from llm_eval_pipeline.core.metrics.spec import LOWER, NEITHER, NON_NEGATIVE, UNIT, MetricSpec

GROUP = "operational"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("error_rate", GROUP, LOWER, UNIT, "share of rows whose generation failed"),
    MetricSpec("latency_ms", GROUP, LOWER, NON_NEGATIVE,
               "time a row cost, in milliseconds (see generations.latency_ms)"),
    MetricSpec("output_tokens", GROUP, NEITHER, NON_NEGATIVE, "tokens generated per row"),
    MetricSpec("prompt_tokens", GROUP, NEITHER, NON_NEGATIVE, "prompt tokens per row"),
    MetricSpec("tokens_per_s", GROUP, "higher", NON_NEGATIVE,
               "sum(output_tokens) / sum(latency_ms) x 1000, one value per partition"),
    MetricSpec("cost_usd", GROUP, LOWER, NON_NEGATIVE,
               "the partition's generation cost in US dollars from the model's prices "
               "(core.cost), one value per partition"),
    MetricSpec("judge_cost_usd", GROUP, LOWER, NON_NEGATIVE,
               "the partition's judge requests in US dollars from the judge's prices, one "
               "value per partition"),
)  # fmt: skip
