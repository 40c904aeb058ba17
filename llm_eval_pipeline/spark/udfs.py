"""Spark adapters: thin ``mapInPandas`` wrappers around the pure functions in ``core``.

Each task reports what it did (worker pid, device, the GPU Spark assigned it, model load
time, rows, seconds) through an accumulator, so the driver can say how many times a model
was loaded and where it ran without timing anything.
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
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.models import ModelSpec
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    EXAMPLE_METRICS,
    GENERATIONS,
    METRIC_CONFIG_HASH,
    Col,
)
from llm_eval_pipeline.core.scoring import ScoringContext, score_batch
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
    def gpu_addresses(self) -> list[str]:
        """The GPU addresses Spark's resource scheduler assigned to the tasks."""
        return sorted({e["gpu"] for e in self.events if e.get("gpu") is not None})

    @property
    def fallbacks(self) -> list[str]:
        """Why tasks that were assigned a GPU ran on the CPU (one entry per reason)."""
        return sorted({e["fallback"] for e in self.events if e.get("fallback")})

    def seconds_per_group(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for event in self.events:
            for group, seconds in event.get("timings", {}).items():
                totals[group] = totals.get(group, 0.0) + seconds
        return totals

    def loads_per_worker(self) -> dict[int, int]:
        loads: dict[int, int] = {}
        for e in self.events:
            loads[e["pid"]] = loads.get(e["pid"], 0) + (e["load_seconds"] is not None)
        return loads


@dataclass(frozen=True)
class TaskDevice:
    """Where a task runs: ``device`` for torch, the ``gpu`` address Spark assigned (None
    when it assigned none), and why an assigned GPU was not used."""

    device: str
    gpu: str | None = None
    fallback: str | None = None

    def report(self) -> dict[str, Any]:
        return {"device": self.device, "gpu": self.gpu, "fallback": self.fallback}


def task_device(context: TaskContext | None) -> TaskDevice:
    """``cuda:<address>`` when Spark assigned this task a GPU that torch can use; the CPU,
    with the reason, when the assigned GPU is not usable here; else the CPU."""
    gpu = context.resources().get("gpu") if context is not None else None
    if gpu is None or not gpu.addresses:
        return TaskDevice("cpu")
    address = gpu.addresses[0]
    import torch

    if not torch.cuda.is_available():
        reason = f"gpu {address} assigned by Spark, but CUDA is not available: ran on the CPU"
        return TaskDevice("cpu", address, reason)
    if not address.isdigit() or int(address) >= torch.cuda.device_count():
        reason = (
            f"gpu {address} assigned by Spark, but torch sees {torch.cuda.device_count()} "
            "CUDA device(s): ran on the CPU"
        )
        return TaskDevice("cpu", address, reason)
    return TaskDevice(f"cuda:{address}", address)


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _stage_setup(frame: DataFrame, partitions: int | None) -> tuple[int, int, Accumulator]:
    """Spark tasks for a model stage, torch threads per task (the cores shared among the
    concurrent tasks), and the accumulator the tasks report to."""
    context = frame.sparkSession.sparkContext
    threads = max(1, (os.cpu_count() or 1) // max(1, context.defaultParallelism))
    events = context.accumulator([], EventListParam())
    return partitions or context.defaultParallelism, threads, events


def _task_start(threads: int) -> TaskDevice:
    """In a task: the device Spark assigned, with torch's CPU threads set on the CPU."""
    device = task_device(TaskContext.get())
    if device.device == "cpu":
        _set_torch_threads(threads)
    return device


def generate_outputs(
    examples: DataFrame,
    spec: ModelSpec,
    partitions: int | None = None,
) -> tuple[DataFrame, Accumulator]:
    """Model outputs for ``examples`` (one day's ``eval_examples``) as a lazy DataFrame in
    the ``generations`` schema, and the accumulator its tasks report to."""
    partitions, threads, events = _stage_setup(examples, partitions)
    config_hash = spec.generation_config_hash

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        started = time.perf_counter()
        device = _task_start(threads)
        cached = model_cache.get_backend(spec, device.device)
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
                    Col.OUTPUT_LOGPROB: [o.output_logprob for o in outputs],
                    Col.OUTPUT_LOGPROB_TOKENS: pd.array(
                        [o.output_logprob_tokens for o in outputs], "Int64"
                    ),
                    Col.GENERATION_CONFIG_HASH: config_hash,
                    Col.EVAL_DATE: batch[Col.EVAL_DATE].to_numpy(),
                    Col.MODEL_ID: spec.name,
                }
            )
        events.add(
            [
                {
                    **device.report(),
                    "pid": cached.pid,
                    "device": cached.backend.device,  # a spec may pin its own device
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


def scoring_context(spec: ModelSpec, config: MetricConfig, device: str) -> ScoringContext:
    """The scoring context for ``spec``, its models from the worker's cache: for
    perplexity its own model when it is a transformers model, else the configured scorer
    model, else a note; the NLI model when one is configured."""
    from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer

    context = ScoringContext()
    if config.nli_model and config.enabled("hallucination"):
        context.nli = model_cache.get_nli(config.nli_model, device)
    if not config.enabled("perplexity"):
        return context
    scorer_spec = spec
    if spec.backend != "transformers":
        if not config.scorer_model:
            context.perplexity_note = (
                f"no local model scores text for the {spec.backend} backend; set "
                "scorer_model to choose one"
            )
            return context
        scorer_spec = ModelSpec(
            f"{spec.name}-scorer", "transformers", {"path": config.scorer_model}, spec.generation
        )
    backend = model_cache.get_backend(scorer_spec, device).backend
    context.perplexity = PerplexityScorer(
        backend.model,  # type: ignore[attr-defined]
        backend.tokenizer,  # type: ignore[attr-defined]
        spec.generation.render,
        device=backend.device,
        batch_size=config.perplexity_batch_size,
        stride=config.perplexity_stride,
    )
    return context


def score_outputs(
    joined: DataFrame,
    spec: ModelSpec,
    config: MetricConfig,
    partitions: int | None = None,
) -> tuple[DataFrame, Accumulator]:
    """``score_batch`` over generations joined with their examples, as a lazy DataFrame
    in the ``example_metrics`` schema, and the accumulator its tasks report to (with the
    seconds spent per metric group)."""
    partitions, threads, events = _stage_setup(joined, partitions)
    config_hash = config.hash

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        started = time.perf_counter()
        device = _task_start(threads)
        context = scoring_context(spec, config, device.device)
        rows = 0
        for batch in batches:
            scored = score_batch(batch, config, context)
            for column in ALL_METRIC_COLUMNS:
                if column not in scored:
                    scored[column] = float("nan")
            scored[METRIC_CONFIG_HASH] = config_hash
            scored[Col.GENERATION_CONFIG_HASH] = batch[Col.GENERATION_CONFIG_HASH].to_numpy()
            scored[Col.EVAL_DATE] = batch[Col.EVAL_DATE].to_numpy()
            scored[Col.MODEL_ID] = batch[Col.MODEL_ID].to_numpy()
            rows += len(scored)
            yield scored[EXAMPLE_METRICS.columns]
        events.add(
            [
                {
                    **device.report(),
                    "pid": os.getpid(),
                    "load_seconds": None,
                    "rows": rows,
                    "seconds": time.perf_counter() - started,
                    "timings": dict(context.timings),
                }
            ]
        )

    frame = joined.repartition(partitions).mapInPandas(
        run, from_arrow_schema(EXAMPLE_METRICS.schema)
    )
    return frame, events
