"""Faults of whole processes, with `llm-eval run` in its own process as a user runs it:
two runs at once on one home (fresh: the Delta tables, the Dagster instance and the
MLflow store are all created concurrently), and runs killed in the middle of generation
(a Spark Python worker killed; the whole process tree killed)."""

import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from llm_eval_pipeline.cli.run import latest_day
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    EXAMPLE_METRICS,
    GENERATIONS,
    METRIC_AGGREGATES,
    Col,
)
from llm_eval_pipeline.delta.store import DeltaStore, committed_partition
from llm_eval_pipeline.tracking.mlflow_runs import TAG_KIND, TAG_MODEL, experiment_name
from llm_eval_pipeline_tests.defs.test_aggregates_asset import content_hash
from llm_eval_pipeline_tests.openai_server import FakeServer, Received, serve
from llm_eval_pipeline_tests.processes import (
    CAPITALS,
    capitals_dataset,
    environment,
    finish,
    llm_eval,
    start_llm_eval,
)

DAY = latest_day()
OTHER_DAY = DAY - dt.timedelta(days=1)
TABLES = (GENERATIONS, EXAMPLE_METRICS, METRIC_AGGREGATES)


def run_days(env: dict[str, str], data: Path, start: dt.date, *models: str) -> subprocess.Popen:
    days = ["--start", str(start), "--end", str(DAY)]
    return start_llm_eval(env, "run", "--dataset", str(data), *days, "--models", ",".join(models))


def register(env: dict[str, str], *args: str) -> None:
    llm_eval(env, "models", "add", *args)


def model_runs(home: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment_name("capitals"))
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if r.data.tags.get(TAG_KIND) != "dashboard"]


@pytest.mark.e2e
def test_two_runs_at_once_on_a_fresh_home_both_commit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environment(home)
    data = capitals_dataset(home)
    register(env, "a", "--backend", "precomputed", "--column", "right", "--baseline")
    register(env, "b", "--backend", "precomputed", "--column", "wrong")

    runs = [run_days(env, data, DAY, model) for model in ("a", "b")]
    results = [finish(run) for run in runs]

    for code, output in results:
        assert code == 0, output
    store = DeltaStore(home / "delta")
    # Both processes ingested the same day: replaced, not doubled.
    assert store.read_arrow(EVAL_EXAMPLES).num_rows == len(CAPITALS)
    for spec in TABLES:
        table = store.read_arrow(spec)
        counts = {m: table.column(Col.MODEL_ID).to_pylist().count(m) for m in ("a", "b")}
        if spec is METRIC_AGGREGATES:  # one row per metric
            assert counts["a"] == counts["b"] > 0
        else:
            assert counts == {"a": len(CAPITALS), "b": len(CAPITALS)}, spec.name
        history = DeltaTable(str(store.path(spec))).history()
        predicates = [committed_partition(c) or "" for c in history]
        for model in ("a", "b"):
            assert sum(f"model_id = '{model}'" in p for p in predicates) == 1, spec.name
    assert sorted(r.data.tags[TAG_MODEL] for r in model_runs(home)) == ["a", "b"]


def killed_worker(process: subprocess.Popen) -> int:
    """SIGKILL to the Spark Python workers (pyspark.daemon and its forks) under
    ``process``; returns how many were killed."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pending, killed = [process.pid], 0
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pyspark.daemon" in command:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def wait_for_requests(server: FakeServer, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while len(server.requests) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "generation did not start within 240 s"
        time.sleep(0.2)


def answer_v2(received: Received) -> dict:
    city = next(city for country, city in CAPITALS if country in received.prompt)
    return {"choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"v2: {city}"}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2}}  # fmt: skip


@pytest.mark.e2e
def test_a_killed_run_leaves_the_previous_partition_whole(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    env = environment(home)
    data = capitals_dataset(home)
    store = DeltaStore(home / "delta")
    with serve(FakeServer(), monkeypatch) as server:
        register(env, "remote", "--backend", "openai", "--model", "m", "--base-url", server.url,
                 "--option", "max_concurrency=1", "--option", "timeout_s=60")  # fmt: skip
        code, output = finish(run_days(env, data, OTHER_DAY, "remote"))
        assert code == 0, output
        before = {spec.name: content_hash(store, spec) for spec in TABLES}
        versions = {spec.name: store.version(spec) for spec in TABLES}
        assert before[GENERATIONS.name][0] == 2 * len(CAPITALS)

        server.default = {"sleep": 5, "body": answer_v2}
        for kill in ("worker", "process tree"):
            sent = len(server.requests)
            run = run_days(env, data, DAY, "remote")
            wait_for_requests(server, sent + 1, run)
            if kill == "worker":
                assert killed_worker(run) >= 1
                code, output = finish(run)
                assert code == 1 and "generations" in output, output
            else:
                os.killpg(run.pid, signal.SIGKILL)
                finish(run)
            # The last complete version is what readers see, and nothing was committed.
            assert {spec.name: content_hash(store, spec) for spec in TABLES} == before, kill
            assert {spec.name: store.version(spec) for spec in TABLES} == versions, kill

        server.default = {"body": answer_v2}
        code, output = finish(run_days(env, data, DAY, "remote"))
    assert code == 0, output
    generated = store.read_arrow(GENERATIONS).to_pylist()
    outputs = {r[Col.EVAL_DATE]: set() for r in generated}
    for row in generated:
        outputs[row[Col.EVAL_DATE]].add(row[Col.OUTPUT].split(":")[0])
    assert outputs == {OTHER_DAY: {"echo"}, DAY: {"v2"}}  # the day redone, the other kept
    aggregates = store.read_arrow(METRIC_AGGREGATES).column(Col.EVAL_DATE).to_pylist()
    assert set(aggregates) == {DAY, OTHER_DAY}
    assert len(model_runs(home)) == 2  # one MLflow run per day, none doubled
