"""``llm-eval serve``: the production deployment on one machine, over PostgreSQL.

Three servers, all on 127.0.0.1 (put a reverse proxy in front to expose them):

* ``dagster-webserver`` (the UI) and ``dagster-daemon`` (schedules, sensors, the run
  queue), sharing the Dagster instance of ``LLM_EVAL_HOME/dagster_home``, whose
  ``dagster.yaml`` keeps runs, events and schedule ticks in the PostgreSQL database of
  ``database_url`` (``LLM_EVAL_DATABASE_URL``);
* ``mlflow server``, its tracking store in the database of the same name plus
  ``_mlflow`` on the same server (created when missing, which needs the CREATEDB
  privilege; Dagster's and MLflow's tables would collide in one database), its artifacts
  in ``LLM_EVAL_HOME/mlartifacts``. The runs the daemon launches log to it.

The daily ingestion and the weekly Delta maintenance schedules run by themselves in this
deployment; the automation sensor runs every registered model's chain once a day is
ingested. The Spark profile is the settings' (``profile: cluster`` and ``spark_master``
for a cluster).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llm_eval_pipeline.cli.database import DAGSTER_URL_ENV, check_database, ensure_database
from llm_eval_pipeline.cli.ui import (
    NO_TELEMETRY,
    code_location,
    prepare_dagster_home,
    run_servers,
)
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.settings import (
    Settings,
    dagster_database_url,
    mlflow_database_url,
    redacted_url,
)


def serve_commands(settings: Settings, port: int, mlflow_port: int) -> dict[str, list[str]]:
    """The three servers ``llm-eval serve`` starts."""
    assert settings.database_url is not None
    bin_dir, target = Path(sys.executable).parent, code_location()
    settings.mlartifacts_dir.mkdir(parents=True, exist_ok=True)
    return {
        "mlflow": [
            str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
            "--backend-store-uri", mlflow_database_url(settings.database_url),
            "--artifacts-destination", settings.mlartifacts_dir.as_uri(),
        ],
        "dagster-daemon": [str(bin_dir / "dagster-daemon"), "run", *target],
        "dagster-webserver": [
            str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), *target,
        ],
    }  # fmt: skip


def serve_environment(settings: Settings, mlflow_port: int) -> dict[str, str]:
    """The servers' environment: the home, its instance, the database, and the MLflow
    server as the runs' tracking URI."""
    assert settings.database_url is not None
    return {
        **os.environ,
        **NO_TELEMETRY,
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
        "LLM_EVAL_HOME": str(settings.home),
        "LLM_EVAL_DATABASE_URL": settings.database_url,
        DAGSTER_URL_ENV: dagster_database_url(settings.database_url),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
    }


def start_serve(settings: Settings, port: int, mlflow_port: int) -> int:
    """Run the production servers until Ctrl-C (or until one exits), then stop them."""
    if settings.database_url is None:
        raise UserError(
            "llm-eval serve is the PostgreSQL deployment: set database_url "
            "(LLM_EVAL_DATABASE_URL=postgresql://user:password@host:5432/llm_eval); "
            "`llm-eval ui` serves the embedded sqlite one"
        )
    check_database(settings.database_url)
    ensure_database(mlflow_database_url(settings.database_url))
    env = serve_environment(settings, mlflow_port)
    commands = serve_commands(settings, port, mlflow_port)
    print(f"Dagster instance: {redacted_url(settings.database_url)}")
    store = redacted_url(mlflow_database_url(settings.database_url))
    print(f"MLflow on http://127.0.0.1:{mlflow_port} (tracking store {store})")
    print(f"Dagster UI on http://127.0.0.1:{port}; dagster-daemon runs the schedules")
    print("Ctrl-C stops all three.", flush=True)
    return run_servers(commands, env)
