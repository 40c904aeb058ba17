"""`llm-eval ui` end to end: a pipeline run through the CLI, then the real Dagster and
MLflow UIs on 127.0.0.1, opened in headless Chromium. With LLM_EVAL_SCREENSHOTS=1 the
screenshots are saved to docs/screenshots/ for the README."""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from llm_eval_pipeline.cli import latest_day
from llm_eval_pipeline.core.schema import METRIC_AGGREGATES
from llm_eval_pipeline.tracking.mlflow_runs import experiment_name
from llm_eval_pipeline_tests.browser import browser  # noqa: F401
from llm_eval_pipeline_tests.conftest import write_jsonl

REPO = Path(__file__).parent.parent
SCREENSHOTS = REPO / "docs" / "screenshots"
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo")]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def llm_eval(env: dict[str, str], *args: str) -> str:
    exe = Path(sys.executable).with_name("llm-eval")
    done = subprocess.run(
        [str(exe), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def shoot(page, name: str) -> None:
    if os.environ.get("LLM_EVAL_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name))


@pytest.mark.e2e
def test_ui_shows_the_chain_in_dagster_and_the_runs_in_mlflow(
    tmp_path: Path,
    browser,  # noqa: F811
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "LLM_EVAL_HOME": str(home), "LLM_EVAL_SPARK_UI": "false"}
    rows = [
        {
            "prompt": f"What is the capital of {country}?",
            "references": [city],
            "right": f"The capital of {country} is {city}.",
            "wrong": f"The capital of {country} is Springfield.",
        }
        for country, city in CAPITALS
    ]
    dataset = write_jsonl(home / "data" / "capitals.jsonl", rows)
    llm_eval(env, "models", "add", "base", "--backend", "precomputed", "--column", "right",
             "--baseline")  # fmt: skip
    llm_eval(env, "models", "add", "other", "--backend", "precomputed", "--column", "wrong")
    end = latest_day()
    start = end - dt.timedelta(days=1)
    out = llm_eval(env, "run", "--dataset", str(dataset), "--start", str(start), "--end", str(end))
    assert "Leaderboard for" in out

    dagster_port, mlflow_port = free_port(), free_port()
    exe = Path(sys.executable).with_name("llm-eval")
    command = [str(exe), "ui", "--port", str(dagster_port), "--mlflow-port", str(mlflow_port)]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    dagster = f"http://127.0.0.1:{dagster_port}"
    mlflow = f"http://127.0.0.1:{mlflow_port}"
    try:
        deadline = time.monotonic() + 180
        while not (answers(f"{dagster}/server_info") and answers(f"{mlflow}/health")):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the UIs did not answer within 180 s"
            time.sleep(1)

        client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(experiment_name("capitals"))
        assert len(client.search_runs([experiment.experiment_id])) == 4
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        page.goto(f"{mlflow}/#/experiments/{experiment.experiment_id}/runs")
        page.get_by_text(f"other {end}").first.wait_for(timeout=60_000)
        page.get_by_text(f"base {start}").first.wait_for(timeout=10_000)
        shoot(page, "mlflow_runs.png")

        page.goto(f"{dagster}/assets")
        skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter
        with contextlib.suppress(PlaywrightTimeout):
            skip.click(timeout=15_000)
        page.goto(f"{dagster}/assets/{METRIC_AGGREGATES.name}?view=lineage&lineageScope=neighbors")
        for name in ("example_metrics", "mlflow_eval_runs", "eval_dashboard"):
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        shoot(page, "dagster_assets.png")
        page.goto(f"{dagster}/assets/{METRIC_AGGREGATES.name}?view=partitions")
        page.get_by_text("Materialized (4)").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        shoot(page, "dagster_partitions.png")
        context.close()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert "Ctrl-C stops both" in output
    assert not answers(f"{dagster}/server_info") and not answers(f"{mlflow}/health")
