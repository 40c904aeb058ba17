"""B5, B6, B7: the Spark stages against their in-process work.

B5  the ``example_metrics`` stage (``score_outputs``, a mapInPandas over ``score_batch``)
    through local Spark on 10,000 rows, against ``score_batch`` called in-process on the
    same rows; goal: Spark <= 1.3x the in-process time (the SparkSession's start is
    excluded: it is created before anything is timed).
B6  the same stage at 1,000 / 10,000 / 50,000 rows; goal: 10x the rows in at most 11x
    the time, and a flat peak of the driver's memory (rows stream to the workers in Arrow
    batches). The peak RSS of the Python driver and of Spark's JVM is sampled every 10 ms.
B7  model loads during a 4-partition generation stage against the number of Python
    workers that ran its tasks; goal: exactly one load per worker per model, and none on a
    second run (the per-worker model cache).

Rows cycle through the demo dataset; outputs come from a pool of 1,000 distinct texts,
and the groups are ROUGE, correctness (with all-MiniLM embeddings) and the hallucination
index (perplexity is B3's). Both sides see the same rows and must return the same scores
(within 1e-6: float sums in the embedding model vary with how texts are batched).

    .venv/bin/python -m benchmarks.spark_stage [--repetitions 5] [--quick]
"""

from __future__ import annotations

import json
import os
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Result, demo_model_specs, main_for, repeat
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.models import parse_spec
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.core.scoring import output_columns, score_batch
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.settings import get_settings
from llm_eval_pipeline.spark.session import spark_conf, use_this_python_for_workers
from llm_eval_pipeline.spark.udfs import TaskStats, generate_outputs, score_outputs

CONFIG = MetricConfig(groups=("rouge", "correctness", "hallucination"))
SPEC = parse_spec({"name": "logged", "backend": "precomputed", "options": {"column": "x"}})
FILLERS = [
    "It is the answer the passage gives.",
    "The text says so in its second sentence.",
    "Some sources give 1,440 as the figure.",
    "This was first recorded in 1887 by a French engineer.",
    "Nobody disputes it.",
]


def rows(n: int) -> pd.DataFrame:
    records = [json.loads(line) for line in Path(demo_dataset_path()).read_text().splitlines()]
    picked = [records[i % len(records)] for i in range(n)]
    pool = [f"{records[i % len(records)]['references'][0]} {FILLERS[i % 5]}" for i in range(1000)]
    return pd.DataFrame(
        {
            Col.EXAMPLE_ID: [f"e{i:06d}" for i in range(n)],
            Col.PROMPT: [r["prompt"] for r in picked],
            Col.CONTEXT: [r.get("context") for r in picked],
            Col.REFERENCES: [r["references"] for r in picked],
            Col.OUTPUT: [pool[(i * 7) % len(pool)] for i in range(n)],
            Col.GENERATION_CONFIG_HASH: SPEC.generation_config_hash,
            Col.EVAL_DATE: pd.Timestamp("2026-11-20").date(),
            Col.MODEL_ID: SPEC.name,
        }
    )


def session():
    from pyspark.sql import SparkSession

    settings = get_settings()
    use_this_python_for_workers(settings)
    spark = SparkSession.builder.config(map=spark_conf(settings)).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class PeakMemory:
    """Samples the resident set size of some processes every 10 ms; peaks in MiB."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.peaks = pids, dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peaks[name] = max(self.peaks[name], int(line.split()[1]) / 1024)
            time.sleep(0.01)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def in_process(frame: pd.DataFrame) -> pd.DataFrame:
    return score_batch(frame, CONFIG)


def through_spark(cached, partitions: int) -> pd.DataFrame:
    table, _ = score_outputs(cached, SPEC, CONFIG, partitions)
    return table.toPandas()


def same_scores(ours: pd.DataFrame, theirs: pd.DataFrame) -> bool:
    theirs = theirs.set_index(Col.EXAMPLE_ID).loc[ours[Col.EXAMPLE_ID]]
    return all(
        np.allclose(ours[c].to_numpy(float), theirs[c].to_numpy(float), atol=1e-6, equal_nan=True)
        for c in output_columns(CONFIG)
    )


def b5(spark, n: int, repetitions: int) -> Result:
    frame = rows(n)
    cached = spark.createDataFrame(frame).cache()
    cached.count()
    partitions = spark.sparkContext.defaultParallelism
    if not same_scores(in_process(frame), through_spark(cached, partitions)):
        raise SystemExit("B5: the Spark path and score_batch disagree")
    local, _ = repeat(partial(in_process, frame), repetitions)
    spark_time, _ = repeat(partial(through_spark, cached, partitions), repetitions)
    ratio = spark_time.median / local.median
    return Result(
        "B5",
        f"example_metrics stage on {n:,} rows ({', '.join(CONFIG.groups)})",
        "score_batch in-process",
        f"Spark mapInPandas, {partitions} tasks",
        local,
        spark_time,
        ratio,
        "Spark <= 1.3x the in-process time (ratio shown: Spark / in-process)",
        ratio <= 1.3,
        [
            "same scores on both sides (within 1e-6: sentence embeddings are batched "
            "differently per partition); SparkSession start excluded"
        ],
    )


def b6(spark, sizes: list[int], repetitions: int) -> Result:
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    partitions = spark.sparkContext.defaultParallelism
    timings, peaks = {}, {}
    for n in sizes:
        cached = spark.createDataFrame(rows(n)).cache()
        cached.count()
        with PeakMemory({"python": os.getpid(), "jvm": int(jvm_pid)}) as memory:
            timings[n], _ = repeat(partial(through_spark, cached, partitions), repetitions)
        peaks[n] = memory.peaks
        cached.unpersist()
    growth = [
        (small, big, timings[big].median / timings[small].median)
        for small, big in zip(sizes, sizes[1:], strict=False)
    ]
    linear = all(ratio <= 1.1 * big / small for small, big, ratio in growth)
    notes = [
        f"{n:>6,} rows: {timings[n].describe()}; driver peak RSS python "
        f"{peaks[n]['python']:.0f} MiB, JVM {peaks[n]['jvm']:.0f} MiB"
        for n in sizes
    ]
    notes += [f"{big // small}x the rows: {ratio:.2f}x the time" for small, big, ratio in growth]
    first, last = peaks[sizes[0]], peaks[sizes[-1]]
    python_growth = last["python"] - first["python"]
    notes.append(
        f"peak growth from {sizes[0]:,} to {sizes[-1]:,} rows: Python driver "
        f"{python_growth:+.0f} MiB, JVM {last['jvm'] - first['jvm']:+.0f} MiB (the JVM's "
        "includes the input rows this benchmark caches in Spark so that both sides start "
        "from memory, and heap it keeps once grown; it is not checked)"
    )
    return Result(
        "B6",
        f"example_metrics stage at {' / '.join(f'{n:,}' for n in sizes)} rows",
        "",
        "",
        None,
        None,
        None,
        "10x rows <= 11x time; Python driver's peak memory flat (< 100 MiB growth)",
        linear and python_growth < 100,
        notes,
    )


def b7(spark) -> Result:
    spec = demo_model_specs()[QA_MODEL]
    records = rows(64)[[Col.EXAMPLE_ID, Col.PROMPT, Col.CONTEXT]]
    records[Col.METADATA] = [{} for _ in range(len(records))]
    records[Col.EVAL_DATE] = pd.Timestamp("2026-11-20").date()
    examples = spark.createDataFrame(records)
    runs = []
    for _ in range(2):
        frame, events = generate_outputs(examples, spec, partitions=4)
        frame.count()
        runs.append(TaskStats(events.value))
    first, second = runs
    per_worker = first.loads_per_worker()
    met = (
        first.model_loads == first.python_workers
        and all(v == 1 for v in per_worker.values())
        and second.model_loads == 0
    )
    return Result(
        "B7",
        "model loads in a 4-partition generation stage (tiny-qa)",
        "",
        "",
        None,
        None,
        None,
        "exactly one load per Python worker per model",
        met,
        [
            f"first run: {first.tasks} tasks in {first.python_workers} Python workers, "
            f"{first.model_loads} loads ({per_worker})",
            f"second run: {second.tasks} tasks, {second.model_loads} loads (cached)",
        ],
    )


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    spark = session()
    sizes = [200, 1_000, 2_000] if quick else [1_000, 10_000, 50_000]
    return [b5(spark, sizes[1], repetitions), b6(spark, sizes, repetitions), b7(spark)]


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
