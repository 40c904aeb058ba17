"""Spark adapters: thin ``mapInPandas`` wrappers around the pure functions in ``core``.

Each task reports what it did (worker pid, device, model load time, rows, seconds) through
an accumulator, so the driver can say how many times a model was loaded and where it ran
without timing anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark import TaskContext
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from llm_eval_pipeline.core.backends.base import GenerationInput
from llm_eval_pipeline.core.models import ModelSpec
from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.spark import model_cache


class EventListParam(AccumulatorParam):
    """Accumulates a list of per-task event dicts."""

    def zero(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return []

    def addInPlace(  # noqa: N802 - Spark's name
        self, left: list[dict[str, Any]], right: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        left.extend(right)
        return left


@dataclass(frozen=True)
class TaskStats:
    """What the tasks of one stage reported."""

    events: list[dict[str, Any]]

    @property
    def model_loads(self) -> int:
        return sum(1 for e in self.events if e["load_seconds"] is not None)

    @property
    def load_seconds(self) -> float:
        return sum(e["load_seconds"] or 0.0 for e in self.events)

    @property
    def python_workers(self) -> int:
        return len({e["pid"] for e in self.events})

    @property
    def tasks(self) -> int:
        return len(self.events)

    @property
    def devices(self) -> list[str]:
        return sorted({e["device"] for e in self.events})

    @property
    def busy_seconds(self) -> float:
        return sum(e["seconds"] for e in self.events)

    def loads_per_worker(self) -> dict[int, int]:
        loads: dict[int, int] = {}
        for e in self.events:
            loads[e["pid"]] = loads.get(e["pid"], 0) + (e["load_seconds"] is not None)
        return loads


def task_device(context: TaskContext | None) -> str:
    """``cuda:<address>`` when Spark assigned this task a GPU, else ``cpu``."""
    if context is not None:
        gpu = context.resources().get("gpu")
        if gpu is not None and gpu.addresses:
            return f"cuda:{gpu.addresses[0]}"
    return "cpu"


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def generate_outputs(
    examples: DataFrame,
    spec: ModelSpec,
    partitions: int | None = None,
) -> tuple[DataFrame, Accumulator]:
    """Model outputs for ``examples`` (one day's ``eval_examples``) as a lazy DataFrame in
    the ``generations`` schema, and the accumulator its tasks report to."""
    spark = examples.sparkSession
    context = spark.sparkContext
    partitions = partitions or context.defaultParallelism
    threads = max(1, (os.cpu_count() or 1) // max(1, context.defaultParallelism))
    events = context.accumulator([], EventListParam())
    config_hash = spec.generation_config_hash

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        started = time.perf_counter()
        device = task_device(TaskContext.get())
        if device == "cpu":
            _set_torch_threads(threads)
        cached = model_cache.get_backend(spec, device)
        rows = 0
        for batch in batches:
            inputs = [
                GenerationInput(
                    example_id=row[Col.EXAMPLE_ID],
                    text=spec.generation.render(row[Col.PROMPT], row[Col.CONTEXT]),
                    metadata=dict(row[Col.METADATA] or {}),
                )
                for row in batch.to_dict("records")
            ]
            outputs = cached.backend.generate(inputs)
            rows += len(outputs)
            yield pd.DataFrame(
                {
                    Col.EXAMPLE_ID: batch[Col.EXAMPLE_ID].to_numpy(),
                    Col.OUTPUT: [o.output for o in outputs],
                    Col.PROMPT_TOKENS: pd.array([o.prompt_tokens for o in outputs], "Int64"),
                    Col.OUTPUT_TOKENS: pd.array([o.output_tokens for o in outputs], "Int64"),
                    Col.LATENCY_MS: [float(o.latency_ms) for o in outputs],
                    Col.FINISH_REASON: [o.finish_reason for o in outputs],
                    Col.ERROR: [o.error for o in outputs],
                    Col.GENERATION_CONFIG_HASH: config_hash,
                    Col.EVAL_DATE: batch[Col.EVAL_DATE].to_numpy(),
                    Col.MODEL_ID: spec.name,
                }
            )
        events.add(
            [
                {
                    "pid": cached.pid,
                    "device": cached.backend.device,
                    "load_seconds": cached.load_seconds,
                    "rows": rows,
                    "seconds": time.perf_counter() - started,
                }
            ]
        )

    columns = [Col.EXAMPLE_ID, Col.PROMPT, Col.CONTEXT, Col.METADATA, Col.EVAL_DATE]
    frame = (
        examples.select(*columns)
        .repartition(partitions)
        .mapInPandas(run, from_arrow_schema(GENERATIONS.schema))
    )
    return frame, events
