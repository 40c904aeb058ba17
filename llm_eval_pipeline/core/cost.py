"""What evaluation costs: token counts times a model's prices, measured after a run and
estimated before one from the dataset's lengths.

A model spec may carry ``price_per_1k_prompt_tokens`` and ``price_per_1k_output_tokens``
(US dollars per 1,000 tokens, as API price lists give them); the judge endpoint has its
own two prices in the settings. A partition's cost is
``(prompt tokens × prompt price + output tokens × output price) / 1000`` over the rows
whose token counts are known. Before a run, tokens are estimated at ``CHARS_PER_TOKEN``
characters per token (OpenAI's rule of thumb for English text: "one token generally
corresponds to ~4 characters", help.openai.com, "What are tokens and how to count them").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4.0
PRICE_KEYS = ("price_per_1k_prompt_tokens", "price_per_1k_output_tokens")


@dataclass(frozen=True)
class Prices:
    """US dollars per 1,000 prompt tokens and per 1,000 output tokens."""

    prompt_per_1k: float
    output_per_1k: float

    def cost(self, prompt_tokens: float, output_tokens: float) -> float:
        """Dollars for that many tokens."""
        return (prompt_tokens * self.prompt_per_1k + output_tokens * self.output_per_1k) / 1000

    def to_dict(self) -> dict[str, float]:
        return dict(zip(PRICE_KEYS, (self.prompt_per_1k, self.output_per_1k), strict=True))


def parse_prices(raw: Mapping[str, Any], where: str) -> Prices | None:
    """The prices among ``raw``'s keys (both or neither), or None; ValueError naming
    ``where`` and the key for a missing half or a value that is not a number ≥ 0."""
    given = [k for k in PRICE_KEYS if raw.get(k) is not None]
    if not given:
        return None
    if len(given) == 1:
        missing = next(k for k in PRICE_KEYS if k not in given)
        raise ValueError(f"{where}: {given[0]} is set but {missing} is not (give both)")
    values = []
    for key in PRICE_KEYS:
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{where}: {key} must be a number >= 0, got {value!r}")
        values.append(float(value))
    return Prices(*values)


def estimated_tokens(texts: Iterable[str | None]) -> int:
    """Tokens of ``texts`` at ``CHARS_PER_TOKEN`` characters per token (at least one per
    non-empty text)."""
    return sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts if t)


@dataclass(frozen=True)
class Estimate:
    """What generating one day×model partition is expected to take: its examples, prompt
    tokens (the templated prompts), output tokens expected (each example's first
    reference, at most ``max_new_tokens``) and at most (``max_new_tokens`` each), and the
    cost of both at the model's prices (None without prices)."""

    examples: int
    prompt_tokens: int
    output_tokens: int
    output_tokens_max: int
    cost_usd: float | None
    cost_usd_max: float | None


def estimate_partition(
    prompts: Iterable[str | None],
    contexts: Iterable[str | None],
    references: Iterable[Iterable[str] | None],
    render: Callable[[str, str | None], str],
    max_new_tokens: int,
    prices: Prices | None,
) -> Estimate:
    """:class:`Estimate` of one partition from its examples' texts; ``render`` makes a
    model's input from a prompt and its context (``GenerationConfig.render``)."""
    examples = prompt_tokens = output_tokens = 0
    for prompt, context, refs in zip(prompts, contexts, references, strict=True):
        examples += 1
        text = render(prompt or "", context)
        prompt_tokens += estimated_tokens([text])
        first = next(iter(refs), None) if refs is not None else None
        output_tokens += min(max_new_tokens, estimated_tokens([first]) or max_new_tokens)
    most = examples * max_new_tokens
    return Estimate(
        examples,
        prompt_tokens,
        output_tokens,
        most,
        prices.cost(prompt_tokens, output_tokens) if prices else None,
        prices.cost(prompt_tokens, most) if prices else None,
    )
