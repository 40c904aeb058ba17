"""Per-Python-worker cache of loaded backends.

Spark reuses Python workers (``spark.python.worker.reuse``), and this module's state lives
as long as the worker, so a model is loaded once per worker and spec, not once per batch
or task. The generation and perplexity UDFs share it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.backends.base import Backend
from llm_eval_pipeline.core.metrics.hallucination import NliScorer
from llm_eval_pipeline.core.models import ModelSpec

_CACHE: dict[tuple[str, str], Backend] = {}
_NLI: dict[tuple[str, str], NliScorer] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class CachedBackend:
    backend: Backend
    load_seconds: float | None  # None when it came from the cache
    pid: int


def get_backend(spec: ModelSpec, device: str) -> CachedBackend:
    """The backend for ``spec`` on ``device``, loaded on first use in this process."""
    key = (spec.cache_key, device)
    with _LOCK:
        if key in _CACHE:
            return CachedBackend(_CACHE[key], None, os.getpid())
        start = time.perf_counter()
        backend = load_backend(spec, device)
        _CACHE[key] = backend
        return CachedBackend(backend, time.perf_counter() - start, os.getpid())


def get_nli(path: str, device: str) -> NliScorer:
    """The NLI scorer at ``path`` on ``device``, loaded on first use in this process."""
    with _LOCK:
        if (path, device) not in _NLI:
            _NLI[(path, device)] = NliScorer(path, device)
        return _NLI[(path, device)]


def clear() -> None:
    with _LOCK:
        _CACHE.clear()
        _NLI.clear()
