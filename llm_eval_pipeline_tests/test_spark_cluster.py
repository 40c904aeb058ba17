"""The ``cluster`` profile against a real Spark standalone cluster on 127.0.0.1: a master
and one worker started with the ``spark-class`` launcher that ships in the pyspark package,
the worker given a GPU discovery script that reports two addresses, so Spark's resource
scheduler assigns a ``gpu`` address to every task. The pipeline's results there equal its
``local[*]`` results, and the generation UDF reports the address it was given (and, where
CUDA has no such device, that it ran on the CPU)."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyspark
import pytest
from dagster import AssetKey, DagsterInstance

from llm_eval_pipeline.cli.ui import stop_servers
from llm_eval_pipeline.core.models import ModelRegistry, parse_spec
from llm_eval_pipeline.core.schema import ALL_METRIC_COLUMNS, EXAMPLE_METRICS, GENERATIONS, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline_tests.processes import capitals_dataset, environment, free_port, llm_eval
from llm_eval_pipeline_tests.test_process_faults import DAY

GPU_ADDRESSES = ["0", "1"]
SPARK_HOME = Path(pyspark.__file__).parent


def tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def spark_class(log: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SPARK_HOME / "bin" / "spark-class"), *args], env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def master_state(url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{url}/json/", timeout=2) as response:
            return json.load(response)
    except OSError:
        return {}


@pytest.fixture
def standalone_cluster(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A master and a worker with two (reported) GPUs; yields the master URL and the
    discovery script."""
    folder = tmp_path / "spark"
    folder.mkdir()
    script = folder / "gpus.sh"
    script.write_text(
        f"#!/bin/sh\necho '{json.dumps({'name': 'gpu', 'addresses': GPU_ADDRESSES})}'\n"
    )
    script.chmod(0o755)
    port, master_ui, worker_ui = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "SPARK_WORKER_OPTS": "-Dspark.worker.resource.gpu.amount=2 "
        f"-Dspark.worker.resource.gpu.discoveryScript={script}",
    }
    master_url, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{master_ui}"
    logs = {"master": folder / "master.log", "worker": folder / "worker.log"}
    processes = [
        spark_class(logs["master"], env, "org.apache.spark.deploy.master.Master",
                    "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(master_ui)),
        spark_class(logs["worker"], env, "org.apache.spark.deploy.worker.Worker", master_url,
                    "--host", "127.0.0.1", "--cores", "2", "--memory", "3g",
                    "--webui-port", str(worker_ui), "--work-dir", str(folder / "work")),
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while master_state(ui).get("aliveworkers", 0) < 1:
            for process, (name, log) in zip(processes, logs.items(), strict=True):
                assert process.poll() is None, f"the Spark {name} exited:\n{tail(log)}"
            assert time.monotonic() < deadline, (
                "no Spark worker registered within 120 s:\n"
                f"{tail(logs['master'])}\n{tail(logs['worker'])}"
            )
            time.sleep(1)
        (worker,) = master_state(ui)["workers"]
        assert worker["resources"]["gpu"]["addresses"] == GPU_ADDRESSES, worker
        yield master_url, script
    finally:
        stop_servers(processes)


def run_pipeline(home: Path, model: Path, extra_env: dict[str, str]) -> None:
    data = capitals_dataset(home)
    spec = {"name": "tiny", "backend": "transformers", "options": {"path": str(model)}}
    ModelRegistry(home / "models.yaml").add(parse_spec(spec))
    env = {**environment(home), **extra_env}
    days = ["--start", str(DAY), "--end", str(DAY)]
    llm_eval(env, "run", "--dataset", str(data), *days)


def rows(home: Path, spec) -> list[dict]:
    table = DeltaStore(home / "delta").read_arrow(spec)
    return sorted(pa.table(table).to_pylist(), key=lambda r: r[Col.EXAMPLE_ID])


@pytest.mark.e2e
def test_cluster_profile_on_a_standalone_cluster_equals_local(
    tmp_path: Path, standalone_cluster: tuple[str, Path], tiny_models: Path
) -> None:
    import torch

    master_url, script = standalone_cluster
    model = tiny_models / QA_MODEL
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    run_pipeline(local, model, {})
    (cluster / "config.yaml").parent.mkdir(parents=True)
    # The driver must be reachable from the executors: on this cluster, on loopback.
    (cluster / "config.yaml").write_text(
        "spark_conf:\n"
        "  spark.driver.host: 127.0.0.1\n"
        "  spark.driver.bindAddress: 127.0.0.1\n"
        "  spark.executor.memory: 1g\n"
        "  spark.cores.max: '2'\n"
    )
    run_pipeline(
        cluster,
        model,
        {
            "LLM_EVAL_PROFILE": "cluster",
            "LLM_EVAL_SPARK_MASTER": master_url,
            "LLM_EVAL_EXECUTOR_GPUS": "2",
            "LLM_EVAL_TASK_GPUS": "1",
            "LLM_EVAL_GPU_DISCOVERY_SCRIPT": str(script),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
        },
    )

    generated = {name: rows(name, GENERATIONS) for name in (local, cluster)}
    assert len(generated[local]) == 4
    volatile = {Col.LATENCY_MS}
    for here, there in zip(generated[local], generated[cluster], strict=True):
        assert {k: v for k, v in here.items() if k not in volatile} == {
            k: v for k, v in there.items() if k not in volatile
        }
    scored = {name: rows(name, EXAMPLE_METRICS) for name in (local, cluster)}
    for column in ("rougeL", "answer_correctness", "reference_perplexity"):  # computed there
        assert any(row[column] is not None for row in scored[cluster]), column
    for here, there in zip(scored[local], scored[cluster], strict=True):
        for column in ALL_METRIC_COLUMNS:
            if here[column] is None or there[column] is None:  # a metric not computed
                assert here[column] is there[column], column
            else:
                assert here[column] == pytest.approx(there[column], rel=1e-5, nan_ok=True)

    instance = DagsterInstance.from_config(str(cluster / "dagster_home"))
    event = instance.get_latest_materialization_event(AssetKey(GENERATIONS.name))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assigned = metadata["gpu_addresses"].split(", ")
    assert assigned and set(assigned) <= set(GPU_ADDRESSES), metadata
    if torch.cuda.is_available() and torch.cuda.device_count() >= len(GPU_ADDRESSES):
        assert metadata["device"] == ", ".join(f"cuda:{a}" for a in assigned)
    else:
        assert metadata["device"] == "cpu"
        expected = [
            f"gpu {a} assigned by Spark, but CUDA is not available: ran on the CPU"
            for a in assigned
        ]
        assert metadata["gpu_fallback"] == "; ".join(expected)
    local_instance = DagsterInstance.from_config(str(local / "dagster_home"))
    local_event = local_instance.get_latest_materialization_event(AssetKey(GENERATIONS.name))
    assert local_event.asset_materialization.metadata["gpu_addresses"].value == "none assigned"
