"""The ``precomputed`` backend: outputs already in the dataset, for evaluating logged
production responses. It generates nothing; the rows take the same path downstream.

The output is read from the example's metadata under ``options.column`` (ingestion keeps
every extra source column there as a string)."""

from __future__ import annotations

from collections.abc import Sequence

from llm_eval_pipeline.core.backends.base import FINISH_STOP, GenerationInput, GenerationOutput
from llm_eval_pipeline.core.models import ModelSpec


class PrecomputedBackend:
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        self.column = str(spec.options["column"])
        self.device = "none"

    def generate(self, batch: Sequence[GenerationInput]) -> list[GenerationOutput]:
        outputs = []
        for row in batch:
            value = row.metadata.get(self.column)
            if value is None:
                outputs.append(
                    GenerationOutput.failed(
                        f"example has no precomputed output column {self.column!r}"
                    )
                )
            else:
                outputs.append(GenerationOutput(value, None, None, 0.0, FINISH_STOP))
        return outputs
