"""`llm-eval ui` end to end: a pipeline run through the CLI, then the real Dagster and
MLflow UIs on 127.0.0.1, opened in headless Chromium: the runs in MLflow, the asset graph,
a day×model partition materialized from Dagster's launch dialog, and a newly registered
model backfilled over two days through Dagster's GraphQL API. The dashboard the run wrote
shows a model's ``<script>`` output as text. With LLM_EVAL_SCREENSHOTS=1 the screenshots
are saved to docs/screenshots/ for the README."""

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from mlflow import MlflowClient
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from llm_eval_pipeline.cli.run import latest_day
from llm_eval_pipeline.core.schema import GENERATIONS, METRIC_AGGREGATES, Col
from llm_eval_pipeline.defs.jobs import GENERATION_ASSETS, GENERATION_JOB
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.tracking.mlflow_runs import experiment_name
from llm_eval_pipeline_tests.browser import browser, open_page  # noqa: F401
from llm_eval_pipeline_tests.processes import (
    CAPITALS,
    REPO,
    answers,
    capitals_dataset,
    environment,
    free_port,
    llm_eval,
)

SCREENSHOTS = REPO / "docs" / "screenshots"
PLANTED = "<script>window.__pwned = 1</script>"
LOCATION = {"repositoryLocationName": "llm_eval_pipeline", "repositoryName": "__repository__"}
ADD_PARTITION = """
mutation($repo: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}"""
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on UnauthorizedError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename ... on PartitionBackfill { status numPartitions } ... on PythonError { message }
  }
}"""


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
    env = environment(home)
    dataset = capitals_dataset(home, wrong_city=f"{PLANTED}Springfield")
    # A model registered while the UI runs gets its partition from the new-model sensor
    # but no automatic runs: this test backfills it through GraphQL.
    (home / "config.yaml").write_text("backfill_days: 0\n")
    llm_eval(env, "models", "add", "base", "--backend", "precomputed", "--column", "right",
             "--baseline")  # fmt: skip
    llm_eval(env, "models", "add", "other", "--backend", "precomputed", "--column", "wrong")
    end = latest_day()
    start = end - dt.timedelta(days=1)
    out = llm_eval(env, "run", "--dataset", str(dataset), "--start", str(start), "--end", str(end))
    assert "Leaderboard for" in out
    with open_page(browser, (home / "dashboard" / "index.html").as_uri()) as view:
        assert view.page.get_by_text(PLANTED).count() > 0  # shown as text
        assert view.page.evaluate("window.__pwned") is None  # never run
        assert view.page.locator(".worst script").count() == 0
        assert view.page_errors == [] and view.external_requests == []

    dagster_port, mlflow_port = free_port(), free_port()
    exe = Path(sys.executable).with_name("llm-eval")
    command = [str(exe), "ui", "--port", str(dagster_port), "--mlflow-port", str(mlflow_port)]
    log = tmp_path / "ui.log"  # a file, not a pipe: the servers log more than a pipe holds
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    dagster = f"http://127.0.0.1:{dagster_port}"
    mlflow = f"http://127.0.0.1:{mlflow_port}"
    try:
        deadline = time.monotonic() + 180
        while not (answers(f"{dagster}/server_info") and answers(f"{mlflow}/health")):
            assert process.poll() is None, log.read_text()[-5000:]
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

        instance = DagsterInstance.from_config(str(home / "dagster_home"))
        run_id = materialize_from_the_ui(page, dagster, instance, end, "base")
        page.goto(f"{dagster}/runs/{run_id}")
        page.get_by_text("Success").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        shoot(page, "dagster_run.png")
        # Re-materializing from the UI replaced the partition's rows and its MLflow run.
        assert len(client.search_runs([experiment.experiment_id])) == 4

        llm_eval(env, "models", "add", "third", "--backend", "precomputed", "--column", "right")
        backfill_id = backfill_through_graphql(dagster_port, "third", [start, end])
        page.goto(f"{dagster}/runs/b/{backfill_id}")
        page.get_by_text("Succeeded").first.wait_for(timeout=60_000)
        shoot(page, "dagster_backfill.png")
        context.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert "Ctrl-C stops both" in log.read_text()
    assert not answers(f"{dagster}/server_info") and not answers(f"{mlflow}/health")
    generated = DeltaStore(home / "delta").read_arrow(GENERATIONS)
    third = [r for r in generated.to_pylist() if r[Col.MODEL_ID] == "third"]
    assert sorted({r[Col.EVAL_DATE] for r in third}) == [start, end]
    assert len(third) == 2 * len(CAPITALS)
    assert len(client.search_runs([experiment.experiment_id])) == 6


def materialize_from_the_ui(page, dagster: str, instance, day: dt.date, model: str) -> str:
    """Launch the evaluate_models job for one day×model from its launch dialog, as a user
    would; returns the run id once the run succeeded."""
    page.goto(f"{dagster}/locations/{LOCATION['repositoryLocationName']}/jobs/{GENERATION_JOB}")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    days = dialog.get_by_placeholder("ex: ", exact=False)
    days.fill(day.isoformat())
    days.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").get_by_text(model, exact=True).first.click()
    dialog.get_by_text("Launch runs to materialize").click()  # closes the menu
    page.get_by_role("menuitem").first.wait_for(state="hidden")
    shoot(page, "dagster_launch.png")
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    short = re.search(r"[0-9a-f]{8}", toast.first.inner_text(timeout=30_000)).group(0)
    deadline = time.monotonic() + 300
    while True:
        (run,) = [r for r in instance.get_runs(RunsFilter(job_name=GENERATION_JOB))
                  if r.run_id.startswith(short)]  # fmt: skip
        if run.is_finished:
            break
        assert time.monotonic() < deadline, f"run {run.run_id} still {run.status} after 300 s"
        time.sleep(1)
    assert run.status == DagsterRunStatus.SUCCESS, run.status
    assert run.tags["dagster/partition"] == f"{day.isoformat()}|{model}"
    return run.run_id


def backfill_through_graphql(port: int, model: str, days: list[dt.date]) -> str:
    """Add ``model``'s partition and backfill its day×model chain over ``days`` with
    Dagster's GraphQL API; returns the backfill id once it completed. The client has no
    method for backfills, so the documented mutations go through its ``_execute``."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    added = client._execute(
        ADD_PARTITION, {"repo": LOCATION, "name": MODELS_PARTITION, "key": model}
    )["addDynamicPartition"]
    # The new-model sensor may have added it already.
    assert added["__typename"] in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")
    params = {
        "partitionNames": [f"{day.isoformat()}|{model}" for day in days],
        "assetSelection": [{"path": [name]} for name in GENERATION_ASSETS],
        "title": f"backfill {model}",
    }
    launched = client._execute(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    deadline = time.monotonic() + 400
    while True:
        state = client._execute(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if state.get("status") not in ("REQUESTED", None):
            break
        assert time.monotonic() < deadline, f"backfill {backfill_id} not done after 400 s"
        time.sleep(2)
    assert state == {"__typename": "PartitionBackfill", "status": "COMPLETED_SUCCESS",
                     "numPartitions": len(days)}  # fmt: skip
    return backfill_id
