"""What the pipeline knows about a metric, declared once beside its definition.

Each metric module declares a ``SPECS`` tuple of :class:`MetricSpec`; ``registry``
collects them, and everything that needs a metric's group, direction, range or
aggregation (the table schema, the checks, the verdicts, the dashboard) derives it from
there."""

from __future__ import annotations

import math
from dataclasses import dataclass

HIGHER, LOWER, NEITHER = "higher", "lower", "neither"
"""Which values are better."""
ARITHMETIC, GEOMETRIC = "arithmetic", "geometric"
"""How a partition's values aggregate: the mean, or the geometric mean (exp of the mean
log) for quantities where a few values thousands of times the typical one would otherwise
describe the outliers, not the model."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its column name, metric group, better direction, the values its
    definition allows, how it aggregates, and its definition in one line."""

    name: str
    group: str
    better: str
    valid_range: tuple[float, float]
    definition: str
    aggregation: str = ARITHMETIC

    def __post_init__(self) -> None:
        if self.better not in (HIGHER, LOWER, NEITHER):
            raise ValueError(f"{self.name}: better must be {HIGHER}, {LOWER} or {NEITHER}")
        if self.aggregation not in (ARITHMETIC, GEOMETRIC):
            raise ValueError(f"{self.name}: aggregation must be {ARITHMETIC} or {GEOMETRIC}")
        low, high = self.valid_range
        if not low < high:
            raise ValueError(f"{self.name}: empty valid range {self.valid_range}")

    @property
    def lower_is_better(self) -> bool:
        return self.better == LOWER

    @property
    def direction_label(self) -> str:
        """How a reader should read the number: "higher is better" and so on."""
        if self.better == NEITHER:
            return "no better direction"
        return f"{self.better} is better"


UNIT = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)
