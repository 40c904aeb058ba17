"""The pipeline against a real `mlflow server` on 127.0.0.1, chosen with
MLFLOW_TRACKING_URI as a team would: runs and artifacts go through the server, the
experiment page renders in Chromium, and a server stopped in the middle of a run makes
that run fail clearly while a later run, once the server is back, recovers."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from llm_eval_pipeline.cli.ui import stop_servers
from llm_eval_pipeline.core.schema import GENERATIONS
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.tracking.mlflow_runs import TAG_KIND, TAG_MODEL, experiment_name
from llm_eval_pipeline_tests.browser import browser  # noqa: F401
from llm_eval_pipeline_tests.processes import (
    answers,
    capitals_dataset,
    environment,
    finish,
    free_port,
    llm_eval,
    start_llm_eval,
)
from llm_eval_pipeline_tests.test_process_faults import DAY, register


def start_server(folder: Path, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("mlflow")
    command = [
        str(exe), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (folder / "server.log").open("a")
    server = subprocess.Popen(
        command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not answers(f"http://127.0.0.1:{port}/health"):
        assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "mlflow server did not answer within 120 s"
        time.sleep(0.5)
    return server


def eval_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(experiment_name("capitals"))
    runs = client.search_runs([experiment.experiment_id])
    return sorted(
        (r for r in runs if r.data.tags.get(TAG_KIND) != "dashboard"),
        key=lambda r: r.data.tags[TAG_MODEL],
    )


@pytest.mark.e2e
def test_the_pipeline_logs_to_an_mlflow_server(tmp_path: Path, browser) -> None:  # noqa: F811
    folder = tmp_path / "mlflow"
    folder.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "home"
    # MLflow's own HTTP retries are turned down so that the pipeline's retries (three,
    # with backoff) are what a stopped server meets.
    env = {**environment(home), "MLFLOW_TRACKING_URI": url,
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip
    data = capitals_dataset(home)
    register(env, "a", "--backend", "precomputed", "--column", "right", "--baseline")
    register(env, "b", "--backend", "precomputed", "--column", "wrong")
    days = ["--start", str(DAY), "--end", str(DAY)]
    server = start_server(folder, port)
    try:
        output = llm_eval(env, "run", "--dataset", str(data), *days)
        assert f"MLflow runs: {url}" in output
        assert not (home / "mlflow.db").exists()  # nothing went to the local store

        client = MlflowClient(tracking_uri=url)
        runs = eval_runs(client)
        assert [r.data.tags[TAG_MODEL] for r in runs] == ["a", "b"]
        assert runs[0].data.metrics["rougeL"] > runs[1].data.metrics["rougeL"]
        artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
        assert "examples.json" in artifacts
        examples = Path(client.download_artifacts(runs[0].info.run_id, "examples.json", tmp_path))
        assert "Paris" in examples.read_text()  # served by the server from its store
        assert (folder / "artifacts").is_dir()

        page = browser.new_page()
        experiment = client.get_experiment_by_name(experiment_name("capitals"))
        page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs")
        page.get_by_text(f"a {DAY}").first.wait_for(timeout=60_000)
        page.get_by_text(f"b {DAY}").first.wait_for(timeout=10_000)
        page.close()

        # The server stops once the run has begun; the run fails on its MLflow steps,
        # naming the server, and its Delta tables stay written.
        run = start_llm_eval(env, "run", "--dataset", str(data), *days, "--models", "a")
        seen = []
        while not (seen and seen[-1].startswith("[1/")):  # ingestion done
            seen.append(run.stdout.readline())
            assert seen[-1], "".join(seen)
        stop_servers([server])
        code, output = finish(run)
        assert code == 1, output
        assert "mlflow_eval_runs" in output and f"MLflow tracking at {url}" in output
        assert "unavailable after 4 attempt(s)" in output
        version = DeltaStore(home / "delta").version(GENERATIONS)

        server = start_server(folder, port)
        llm_eval(env, "run", "--dataset", str(data), *days)
        assert [r.info.run_id for r in eval_runs(client)] == [r.info.run_id for r in runs]
        assert DeltaStore(home / "delta").version(GENERATIONS) > version
    finally:
        stop_servers([server])
    assert not answers(f"{url}/health")
