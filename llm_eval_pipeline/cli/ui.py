"""``llm-eval ui``: the Dagster and MLflow UIs on 127.0.0.1, over one home; the Dagster
instance folder the CLI and the UI share."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llm_eval_pipeline.cli.database import DAGSTER_URL_ENV
from llm_eval_pipeline.settings import Settings, dagster_database_url, redacted_url

# Each run starts its own Spark driver: two at a time suits a laptop.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
"""
# The production deployment (``database_url`` set): runs, events and schedules in
# PostgreSQL. The URL is read from the environment (cli/database.py) when the instance
# loads, so the file holds no password.
DAGSTER_POSTGRES_YAML = (
    DAGSTER_YAML
    + """\
storage:
  postgres:
    postgres_url:
      env: LLM_EVAL_DAGSTER_POSTGRES_URL
"""
)


# Usage reports stay off: MLflow's client and server send them unless told not to
# (Dagster's are off in DAGSTER_YAML). Nothing leaves the machine.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def prepare_dagster_home(settings: Settings) -> Path:
    """The Dagster instance folder inside LLM_EVAL_HOME, shared by the CLI and the UI:
    its ``dagster.yaml`` keeps the instance in sqlite there, or in PostgreSQL when
    ``database_url`` is set. A ``dagster.yaml`` this function did not write is left as
    it is; one it wrote for the other storage is replaced."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    if settings.database_url:  # dagster.yaml reads it from the environment
        os.environ[DAGSTER_URL_ENV] = dagster_database_url(settings.database_url)
    dagster_yaml = settings.dagster_home / "dagster.yaml"
    wanted = DAGSTER_POSTGRES_YAML if settings.database_url else DAGSTER_YAML
    current = dagster_yaml.read_text(encoding="utf-8") if dagster_yaml.exists() else None
    if current is None or (current != wanted and current in (DAGSTER_YAML, DAGSTER_POSTGRES_YAML)):
        # written whole or not at all: another process may be reading it already
        partial = dagster_yaml.with_name(f".dagster.yaml.{os.getpid()}")
        partial.write_text(wanted, encoding="utf-8")
        os.replace(partial, dagster_yaml)
    return settings.dagster_home


def code_location() -> list[str]:
    """The Dagster servers' code arguments: the repository's workspace, else the module."""
    if Path("workspace.yaml").exists():
        return ["-w", "workspace.yaml"]
    return ["-m", "llm_eval_pipeline.definitions"]


def ui_commands(settings: Settings, port: int, mlflow_port: int) -> dict[str, list[str]]:
    """The two servers ``llm-eval ui`` starts, both on 127.0.0.1."""
    bin_dir, target = Path(sys.executable).parent, code_location()
    settings.mlartifacts_dir.mkdir(parents=True, exist_ok=True)
    return {
        "dagster": [str(bin_dir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), *target],
        "mlflow": [
            str(bin_dir / "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--default-artifact-root",
            settings.mlartifacts_dir.as_uri(),
        ],
    }


def ui_environment(settings: Settings) -> dict[str, str]:
    """The servers' environment: this one, the home, its Dagster instance, no telemetry."""
    return {
        **os.environ,
        **NO_TELEMETRY,
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
        "LLM_EVAL_HOME": str(settings.home),
    }


def start_ui(settings: Settings, port: int, mlflow_port: int) -> int:
    """Run ``dagster dev`` and ``mlflow ui`` until Ctrl-C (or until one exits), then stop
    both. A remote ``MLFLOW_TRACKING_URI`` has its own UI, so only Dagster starts then."""
    env = ui_environment(settings)
    commands = ui_commands(settings, port, mlflow_port)
    if settings.mlflow_tracking_uri_override and not settings.mlflow_tracking_uri.startswith(
        "sqlite:"
    ):
        del commands["mlflow"]
        print(f"MLflow: {redacted_url(settings.mlflow_tracking_uri)} (MLFLOW_TRACKING_URI)")
    else:
        store = redacted_url(settings.mlflow_tracking_uri)
        print(f"MLflow UI on http://127.0.0.1:{mlflow_port} ({store})")
    print(f"Dagster UI on http://127.0.0.1:{port} (instance: {env['DAGSTER_HOME']})")
    print("Ctrl-C stops both.")
    return run_servers(commands, env)


def run_servers(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Start each command in its own process group, wait until Ctrl-C, SIGTERM or until
    one exits, then stop them all; the largest exit status."""
    # Handled (not ignored, as in a background job) so that the servers start with the
    # default dispositions and stop on SIGINT; SIGTERM stops them the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    servers = {
        name: subprocess.Popen(cmd, env=env, start_new_session=True)
        for name, cmd in commands.items()
    }
    try:
        while all(p.poll() is None for p in servers.values()):
            time.sleep(0.5)
        stopped = [name for name, p in servers.items() if p.poll() is not None]
        print(f"{', '.join(stopped)} stopped; stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the shutdown short: the servers' own
        # children (Dagster's code servers) would outlive it, orphaned.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_servers(list(servers.values()))
    return max((p.returncode or 0) for p in servers.values())


STOP_GRACE_S = 20.0
"""How long ``stop_servers`` waits after each signal before sending the next."""


def stop_servers(processes: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT to each server, then SIGTERM and SIGKILL to its whole process group (a
    server's own workers included) for those still running after ``grace_s``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for stop in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, stop)
