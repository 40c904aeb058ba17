"""The hallucination probability: a logistic calibration of the index's lexical
components, so that a user can read a score as a chance and pick a threshold.

    p = 1 / (1 + exp(-(b₀ + Σ bᵢ xᵢ)))

over the features ``FEATURES``: ``unsupported_fact_share``,
``unsupported_content_share``, ``unsupported_answer_share`` (0 where the example has no
reference), ``contradiction``, ``unbound_relation`` and ``wrong_comparison`` (0 where
absent), ``reference_free`` (1 where the example has no reference, so that the
intercept moves for examples scored on the evidence alone), and ``lexical_index``: the
hallucination index of those components at the default weights
(``HALLUCINATION_WEIGHTS``; the NLI component left out). The index carries the
components the fit alone would drop (on the project's data the unsupported content
share adds nothing once the others are known), so that answers those do not separate
still rank by how much of them is unsupported rather than tie. Every coefficient but
``reference_free``'s is fitted non-negative: more of a sign of fabrication never lowers
the probability. ``hallucinated`` is ``p >= threshold``.

The constants live in ``hallucination_calibration.json`` beside this module, written by
``python -m llm_eval_pipeline.fit_calibration`` from the development part of the
project's labelled data (``llm_eval_pipeline/data``), never from its test part; the file
records what it was fitted on. Logistic (Platt) calibration: Platt 1999, "Probabilistic
outputs for support vector machines".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LEXICAL = (
    "unsupported_fact_share",
    "unsupported_content_share",
    "unsupported_answer_share",
    "contradiction",
    "unbound_relation",
    "wrong_comparison",
)
"""The lexical components, whose weighted mean is ``lexical_index``."""
FEATURES = (*LEXICAL, "reference_free", "lexical_index")
HALLUCINATION_WEIGHTS: Mapping[str, float] = {
    "unsupported_fact_share": 0.4,
    "unsupported_content_share": 0.2,
    "unsupported_answer_share": 0.3,
    "contradiction": 0.4,
    "unbound_relation": 0.2,
    "wrong_comparison": 0.4,
    "nli_contradiction": 0.3,
}
"""The hallucination index's default weights (``hallucination_weights`` in config.yaml
overrides them for the index; the calibration reads the lexical index at these)."""
CONSTANTS = Path(__file__).with_name("hallucination_calibration.json")


def combine(components: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """The weighted mean of the components present (not None) with a positive weight;
    0.0 when none is."""
    present = {k: v for k, v in components.items() if v is not None and weights.get(k, 0) > 0}
    total = sum(weights[k] for k in present)
    return float(sum(weights[k] * v for k, v in present.items()) / total) if total else 0.0


def features(components: Mapping[str, float | None]) -> list[float]:
    """The feature vector of one example's lexical components."""
    reference_free = components.get("unsupported_answer_share") is None
    values = {
        **{name: float(components.get(name) or 0.0) for name in LEXICAL},
        "reference_free": 1.0 if reference_free else 0.0,
        "lexical_index": combine(
            {name: components.get(name) for name in LEXICAL}, HALLUCINATION_WEIGHTS
        ),
    }
    return [values[name] for name in FEATURES]


@dataclass(frozen=True)
class Calibration:
    intercept: float
    coefficients: tuple[float, ...]
    threshold: float

    def probability(self, components: Mapping[str, float | None]) -> float:
        z = self.intercept + sum(
            b * x for b, x in zip(self.coefficients, features(components), strict=True)
        )
        return 1.0 / (1.0 + math.exp(-z))


@cache
def shipped() -> Calibration:
    """The calibration in ``hallucination_calibration.json``."""
    data = json.loads(CONSTANTS.read_text(encoding="utf-8"))
    if tuple(data["features"]) != FEATURES:
        raise ValueError(f"{CONSTANTS}: features {data['features']} are not {list(FEATURES)}")
    return Calibration(
        float(data["intercept"]), tuple(float(b) for b in data["coefficients"]),
        float(data["threshold"]),
    )  # fmt: skip
