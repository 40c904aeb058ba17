"""llm_eval_pipeline: an orchestrated LLM-evaluation pipeline (Dagster, Spark, Delta, MLflow)."""

import contextlib
import os

import pyarrow as pa


def _arrow_memory_pool() -> None:
    """Arrow allocates from jemalloc here, unless ``ARROW_DEFAULT_MEMORY_POOL`` chooses.

    pyarrow's default, mimalloc, keeps what a scan freed: reading a million-row
    partition a batch at a time (50 MB in use at most) left 130 MB resident with it, 50
    with jemalloc (a one-off script of 2026-12-06 19:30 UTC, not kept). The driver of a
    long run reads many such partitions."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        with contextlib.suppress(NotImplementedError):  # a pyarrow built without it
            pa.set_memory_pool(pa.jemalloc_memory_pool())


_arrow_memory_pool()
