"""The generation UDF on the real SparkSession with the tiny demo model."""

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc

from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.backends.base import GenerationInput
from llm_eval_pipeline.core.dataset import ingest
from llm_eval_pipeline.core.models import ModelSpec, parse_spec
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, GENERATIONS, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.spark.udfs import TaskDevice, TaskStats, generate_outputs, task_device
from llm_eval_pipeline_tests.conftest import write_jsonl

DAY = dt.date(2026, 11, 20)


def examples_frame(spark, tmp_path: Path, source: Path):
    store = DeltaStore(tmp_path / "delta")
    result = ingest([source], DAY)
    store.write_partition(EVAL_EXAMPLES, result.examples, {Col.EVAL_DATE: DAY})
    return store.read(spark, EVAL_EXAMPLES, {Col.EVAL_DATE: DAY}), result.examples


def test_model_is_loaded_once_per_worker_and_outputs_match_in_process(
    spark, tmp_path: Path, tiny_specs
) -> None:
    base = tiny_specs[QA_MODEL]
    # a batch size of its own gives this spec a cache key no other test has loaded
    spec = ModelSpec(base.name, base.backend, {**base.options, "batch_size": 7}, base.generation)
    frame, examples = examples_frame(spark, tmp_path, Path(demo_dataset_path()))
    events = []
    for _ in range(2):
        outputs, accumulator = generate_outputs(frame, spec, partitions=4)
        table = outputs.toArrow()
        events.extend(accumulator.value)
        assert table.num_rows == examples.num_rows
    stats = TaskStats(events)
    assert stats.tasks == 8
    assert all(loads <= 1 for loads in stats.loads_per_worker().values()), stats.events
    assert 1 <= stats.model_loads <= stats.python_workers
    assert stats.model_loads < stats.tasks  # later tasks found the model in their worker
    assert stats.devices == ["cpu"]

    assert table.schema.names == GENERATIONS.columns
    assert set(table.column(Col.MODEL_ID).to_pylist()) == {QA_MODEL}
    assert set(table.column(Col.GENERATION_CONFIG_HASH).to_pylist()) == {
        spec.generation_config_hash
    }
    by_id = {r[Col.EXAMPLE_ID]: r for r in table.to_pylist()}
    in_process = load_backend(spec).generate(
        [
            GenerationInput(
                r[Col.EXAMPLE_ID], spec.generation.render(r[Col.PROMPT], r[Col.CONTEXT])
            )
            for r in examples.to_pylist()
        ]
    )
    for row, expected in zip(examples.to_pylist(), in_process, strict=True):
        got = by_id[row[Col.EXAMPLE_ID]]
        assert (got[Col.OUTPUT], got[Col.OUTPUT_TOKENS]) == (
            expected.output,
            expected.output_tokens,
        )


def test_failed_rows_carry_their_error(spark, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "logged.jsonl",
        [
            {"prompt": "2+2?", "references": ["4"], "logged": "4"},
            {"prompt": "3+3?", "references": ["6"]},
        ],
    )
    frame, _ = examples_frame(spark, tmp_path, source)
    spec = parse_spec({"name": "prod", "backend": "precomputed", "options": {"column": "logged"}})
    table = generate_outputs(frame, spec, partitions=2)[0].toArrow()
    failed = table.filter(pc.is_valid(table.column(Col.ERROR))).to_pylist()
    ok = table.filter(pc.is_null(table.column(Col.ERROR))).to_pylist()
    assert [r[Col.OUTPUT] for r in ok] == ["4"]
    assert len(failed) == 1 and "logged" in failed[0][Col.ERROR]
    assert failed[0][Col.OUTPUT] is None and failed[0][Col.FINISH_REASON] == "error"


class _GpuResource:
    """Stands in for the ResourceInformation Spark hands a task on a GPU executor (the
    standalone-cluster test in test_spark_cluster.py gets real ones)."""

    name = "gpu"
    addresses = ["3"]


class _TaskContextOnGpuExecutor:
    def resources(self) -> dict[str, _GpuResource]:
        return {"gpu": _GpuResource()}


class _TaskContextOnCpuExecutor:
    def resources(self) -> dict[str, object]:
        return {}


def test_task_device_uses_the_assigned_gpu_when_cuda_has_it(monkeypatch) -> None:
    import torch

    # This machine has no GPU: torch's view of the devices stands in for one with four.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert task_device(_TaskContextOnGpuExecutor()) == TaskDevice("cuda:3", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    fallback = task_device(_TaskContextOnGpuExecutor())
    assert (fallback.device, fallback.gpu) == ("cpu", "3")
    assert "torch sees 2 CUDA device(s)" in fallback.fallback


def test_task_device_falls_back_to_the_cpu_without_cuda(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    fallback = task_device(_TaskContextOnGpuExecutor())
    assert (fallback.device, fallback.gpu) == ("cpu", "3")
    assert fallback.fallback == "gpu 3 assigned by Spark, but CUDA is not available: ran on the CPU"
    assert task_device(_TaskContextOnCpuExecutor()) == TaskDevice("cpu")
    assert task_device(None) == TaskDevice("cpu")
