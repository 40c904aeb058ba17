"""Each metric declared once (a MetricSpec beside its definition); the schema, checks and
renderers derive from the registry."""

import math

import pytest

from llm_eval_pipeline.core.aggregate import valid_range
from llm_eval_pipeline.core.metrics import registry
from llm_eval_pipeline.core.metrics.spec import MetricSpec
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    EXAMPLE_METRICS,
    GEOMETRIC_METRICS,
    LOWER_IS_BETTER,
    METRIC_COLUMNS,
    OPERATIONAL_METRICS,
)
from llm_eval_pipeline.core.scoring import GROUP_SCORERS


def test_the_schema_derives_from_the_registry() -> None:
    scored = [s.name for s in registry.METRICS.values() if s.group in registry.SCORED_GROUPS]
    assert list(ALL_METRIC_COLUMNS) == scored
    assert all(name in EXAMPLE_METRICS.columns for name in scored)
    assert set(METRIC_COLUMNS) == set(registry.SCORED_GROUPS) == set(GROUP_SCORERS)
    assert OPERATIONAL_METRICS == (
        "error_rate", "latency_ms", "output_tokens", "prompt_tokens", "tokens_per_s",
        "cost_usd", "judge_cost_usd",
    )  # fmt: skip
    assert frozenset({"reference_perplexity", "output_perplexity"}) == GEOMETRIC_METRICS
    assert {"hallucination_index", "reference_perplexity", "error_rate"} <= LOWER_IS_BETTER
    assert "rougeL" not in LOWER_IS_BETTER and "output_tokens" not in LOWER_IS_BETTER


def test_every_metric_has_a_definition_a_range_and_a_direction_label() -> None:
    for spec in registry.METRICS.values():
        assert len(spec.definition) > 10, spec.name
        assert spec.direction_label.endswith(("is better", "direction"))
    assert valid_range("semantic_similarity") == (-1.0, 1.0)
    assert valid_range("reference_perplexity") == (1.0, math.inf)
    with pytest.raises(KeyError, match="is not a metric"):
        registry.metric("rougel")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"better": "up"}, "better must be"),
        ({"aggregation": "median"}, "aggregation must be"),
        ({"valid_range": (1.0, 0.0)}, "empty valid range"),
    ],
)
def test_a_spec_that_cannot_be_right_is_refused(changes: dict, message: str) -> None:
    fields = {"name": "m", "group": "g", "better": "higher", "valid_range": (0.0, 1.0),
              "definition": "d", **changes}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        MetricSpec(**fields)
