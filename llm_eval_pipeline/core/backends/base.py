"""The one small interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llm_eval_pipeline.core.text import valid_unicode

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_ERROR = "error"


@dataclass(frozen=True)
class GenerationInput:
    """One row to generate for: the templated prompt text and the row's metadata (the
    precomputed backend reads its output from there)."""

    example_id: str
    text: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationOutput:
    """What a backend returns for one row. ``error`` is set (and ``output`` is None) when
    this row failed; the others in its batch are unaffected. ``output_logprob`` is the sum
    of the output tokens' log-probabilities over ``output_logprob_tokens`` tokens, when
    the backend reports them."""

    output: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    finish_reason: str
    error: str | None = None
    output_logprob: float | None = None
    output_logprob_tokens: int | None = None

    def __post_init__(self) -> None:
        # An endpoint may answer with a lone surrogate ("\ud800"); Arrow cannot store it.
        object.__setattr__(self, "output", valid_unicode(self.output))
        object.__setattr__(self, "error", valid_unicode(self.error))

    @classmethod
    def failed(cls, error: str, latency_ms: float = 0.0) -> GenerationOutput:
        return cls(None, None, None, latency_ms, FINISH_ERROR, error)


class Backend(Protocol):
    """Generates outputs for a batch of rows, one output per input, in input order."""

    device: str

    def generate(self, batch: Sequence[GenerationInput]) -> list[GenerationOutput]: ...
