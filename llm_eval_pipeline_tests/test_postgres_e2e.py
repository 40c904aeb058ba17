"""The production deployment end to end on PostgreSQL: `llm-eval serve` (dagster-webserver,
dagster-daemon, mlflow server) over a fresh database; the daily schedule, set to tick a
minute or two from now, is run by the daemon: ingestion, then the automation sensor runs
both registered models' chains and the dashboard. The Dagster runs, schedule ticks and the
MLflow runs are read back from PostgreSQL itself.

Needs a PostgreSQL server: ``LLM_EVAL_TEST_DATABASE_URL`` names one with a role that may
create databases (``.ci/run`` starts the image's PostgreSQL 15 and sets it, with
``LLM_EVAL_REQUIRE_POSTGRES=1``, under which a missing server fails instead of skipping).
"""

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from mlflow import MlflowClient

from llm_eval_pipeline.cli.database import (
    DAGSTER_URL_ENV,
    DatabaseError,
    check_database,
    ensure_database,
)
from llm_eval_pipeline.cli.ui import STOP_GRACE_S, stop_servers
from llm_eval_pipeline.core.schema import GENERATIONS, METRIC_AGGREGATES, Col
from llm_eval_pipeline.defs.jobs import INGEST_JOB
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import dagster_database_url, mlflow_database_url
from llm_eval_pipeline.tracking.mlflow_runs import TAG_KIND, TAG_MODEL, experiment_name
from llm_eval_pipeline_tests import postgres_server
from llm_eval_pipeline_tests.processes import (
    answers,
    capitals_dataset,
    environment,
    finish,
    free_port,
    llm_eval,
    processes_naming,
    start_llm_eval,
)

SERVER_ENV, REQUIRE_ENV = "LLM_EVAL_TEST_DATABASE_URL", "LLM_EVAL_REQUIRE_POSTGRES"


def _server() -> str:
    url = os.environ.get(SERVER_ENV)
    required = os.environ.get(REQUIRE_ENV) == "1"
    if not url:
        if required:
            pytest.fail(f"{REQUIRE_ENV}=1 but {SERVER_ENV} is not set")
        pytest.skip(f"no PostgreSQL server: set {SERVER_ENV} (.ci/run does)")
    try:
        check_database(url)
    except DatabaseError as exc:
        if required:
            raise
        pytest.skip(str(exc))
    return url


def _drop(server: str, *names: str) -> None:
    import psycopg2

    connection = psycopg2.connect(server)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


@pytest.fixture
def database() -> Iterator[str]:
    """A new database on the test server, dropped afterwards (with its MLflow twin)."""
    server = _server()
    name = f"llm_eval_test_{uuid.uuid4().hex[:12]}"
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    ensure_database(url)
    try:
        yield url
    finally:
        _drop(server, name, f"{name}_mlflow")


def test_a_wrong_database_url_fails_naming_the_database() -> None:
    url = "postgresql://nobody:secret@127.0.0.1:1/llm_eval_missing"
    with pytest.raises(DatabaseError, match=r"127\.0\.0\.1:1/llm_eval_missing") as raised:
        check_database(url)
    assert "secret" not in str(raised.value)
    assert mlflow_database_url(url).endswith("/llm_eval_missing_mlflow")
    assert dagster_database_url(url).startswith("postgresql+psycopg2://")


def _tick_time() -> tuple[str, dt.date]:
    """An HH:MM at least 90 s from now, and the day its tick ingests (the day before)."""
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=150)
    return at.strftime("%H:%M"), at.date() - dt.timedelta(days=1)


def _wait(what: str, condition, timeout_s: float, serve) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            pytest.fail(f"llm-eval serve exited while waiting for {what}:\n{serve.stdout.read()}")
        if condition():
            return
        time.sleep(3)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.mark.e2e
def test_a_schedule_tick_through_the_daemon_runs_the_chain_on_postgres(
    tmp_path: Path, database: str
) -> None:
    home = tmp_path / "home"
    at, day = _tick_time()
    env = {
        **environment(home),
        "LLM_EVAL_DATABASE_URL": database,
        "LLM_EVAL_DATASET": str(capitals_dataset(home)),
        "LLM_EVAL_DAILY_SCHEDULE_TIME": at,
        "LLM_EVAL_START_DATE": (day - dt.timedelta(days=3)).isoformat(),
    }
    llm_eval(env, "models", "add", "a", "--backend", "precomputed", "--column", "right",
             "--baseline")  # fmt: skip
    llm_eval(env, "models", "add", "b", "--backend", "precomputed", "--column", "wrong")
    port, mlflow_port = free_port(), free_port()
    serve = start_llm_eval(env, "serve", "--port", str(port), "--mlflow-port", str(mlflow_port))
    os.environ[DAGSTER_URL_ENV] = dagster_database_url(database)
    try:
        _wait("the Dagster UI", lambda: answers(f"http://127.0.0.1:{port}/server_info"), 180, serve)
        instance = DagsterInstance.from_config(str(home / "dagster_home"))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"

        def succeeded(job: str) -> list:
            return instance.get_runs(RunsFilter(job_name=job, statuses=[DagsterRunStatus.SUCCESS]))

        def failed() -> list:
            return instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))

        store = DeltaStore(home / "delta")

        def aggregated() -> set[str]:
            return {
                p[Col.MODEL_ID]
                for p in store.partitions(METRIC_AGGREGATES)
                if p[Col.EVAL_DATE] == day.isoformat()
            }

        _wait("the scheduled ingestion", lambda: succeeded(INGEST_JOB) or failed(), 420, serve)
        # the automation sensor then runs each model's day×model chain
        _wait("both models' chains", lambda: aggregated() == {"a", "b"} or failed(), 420, serve)
        assert not failed(), [r.run_id for r in failed()]
        ingest = succeeded(INGEST_JOB)[0]
        assert ingest.tags.get("dagster/schedule_name") == "daily_ingest_schedule"
        assert ingest.tags.get("dagster/partition") == day.isoformat()
        models = {p[Col.MODEL_ID] for p in store.partitions(GENERATIONS)}
        assert models == {"a", "b"}

        # the MLflow runs are in PostgreSQL: read them from the database, not the server
        client = MlflowClient(tracking_uri=mlflow_database_url(database))

        def logged() -> list[str]:
            experiment = client.get_experiment_by_name(experiment_name("capitals"))
            if experiment is None:
                return []
            runs = client.search_runs([experiment.experiment_id])
            return sorted(
                r.data.tags[TAG_MODEL] for r in runs if r.data.tags.get(TAG_KIND) != "dashboard"
            )

        _wait("the MLflow runs", lambda: logged() == ["a", "b"] or failed(), 300, serve)
        assert logged() == ["a", "b"]
        _wait("the dashboard", lambda: (home / "dashboard" / "index.html").exists(), 300, serve)
        assert not failed(), [r.run_id for r in failed()]
    finally:
        # longer than serve's own stop of its servers (SIGINT, then SIGTERM, then SIGKILL)
        stop_servers([serve], grace_s=3 * STOP_GRACE_S)
        os.environ.pop(DAGSTER_URL_ENV, None)
    # stopping serve stops everything it started, Dagster's code servers included
    assert processes_naming(home) == []


@pytest.mark.e2e
def test_postgres_stopped_mid_run_fails_naming_it_and_a_rerun_recovers(tmp_path: Path) -> None:
    """`llm-eval run` on PostgreSQL; the server is stopped once the day's generations are
    committed: the run fails with one message naming the database, and the same command,
    once the server is back, completes the day with one MLflow run, not two."""
    if not postgres_server.available():
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {postgres_server.PG_BIN} has no PostgreSQL 15")
        pytest.skip(f"no PostgreSQL 15 server binaries in {postgres_server.PG_BIN}")
    home = tmp_path / "home"
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date()
    with postgres_server.PrivateServer() as server:
        env = {
            **environment(home),
            "LLM_EVAL_DATABASE_URL": server.url,
            "LLM_EVAL_DATASET": str(capitals_dataset(home)),
            "LLM_EVAL_START_DATE": day.isoformat(),
        }
        llm_eval(env, "models", "add", "a", "--backend", "precomputed", "--column", "right",
                 "--baseline")  # fmt: skip
        store = DeltaStore(home / "delta")
        run = start_llm_eval(env, "run", "--start", day.isoformat(), "--end", day.isoformat())
        deadline = time.monotonic() + 300
        while not store.partitions(GENERATIONS) and run.poll() is None:
            assert time.monotonic() < deadline, "no generations partition in 300 s"
            time.sleep(0.2)
        server.stop()
        code, output = finish(run)
        assert code == 1, output
        assert (
            f"lost the PostgreSQL database postgresql://llm_eval@127.0.0.1:{server.port}/llm_eval"
            in output
        )
        assert "Traceback" not in output
        assert not any(p[Col.MODEL_ID] == "a" for p in store.partitions(METRIC_AGGREGATES))

        server.start()
        rerun = llm_eval(env, "run", "--start", day.isoformat(), "--end", day.isoformat())
        assert "FAILED" not in rerun
        assert [p[Col.MODEL_ID] for p in store.partitions(METRIC_AGGREGATES)] == ["a"]
        client = MlflowClient(tracking_uri=mlflow_database_url(server.url))
        experiment = client.get_experiment_by_name(experiment_name("capitals"))
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(
            r.data.tags[TAG_MODEL] for r in runs if r.data.tags.get(TAG_KIND) != "dashboard"
        ) == ["a"]
