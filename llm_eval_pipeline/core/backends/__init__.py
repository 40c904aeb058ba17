"""Generation backends behind one interface (:class:`~.base.Backend`)."""

from __future__ import annotations

from llm_eval_pipeline.core.backends.base import Backend
from llm_eval_pipeline.core.models import ModelSpec


def load_backend(spec: ModelSpec, device: str = "cpu") -> Backend:
    """Construct (and so load) the backend ``spec`` names, on ``device``."""
    if spec.backend == "transformers":
        from llm_eval_pipeline.core.backends.transformers_backend import TransformersBackend

        return TransformersBackend(spec, device)
    if spec.backend == "openai":
        from llm_eval_pipeline.core.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(spec, device)
    if spec.backend == "precomputed":
        from llm_eval_pipeline.core.backends.precomputed import PrecomputedBackend

        return PrecomputedBackend(spec, device)
    raise ValueError(f"unknown backend {spec.backend!r}")
