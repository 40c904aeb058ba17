"""``llm-eval run`` and ``llm-eval demo``: materialize the pipeline through Dagster for a
range of days, in the instance ``make ui`` opens."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

from llm_eval_pipeline.cli.status import print_summary
from llm_eval_pipeline.cli.ui import prepare_dagster_home
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.file_lock import exclusive
from llm_eval_pipeline.core.models import (
    ModelRegistry,
)
from llm_eval_pipeline.core.schema import (
    Col,
)
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import DEMO_MODELS
from llm_eval_pipeline.settings import Settings, mlflow_database_url, redacted_url

# Dagster's step events go to the run's event log (the UI); the terminal gets INFO and up.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


class CliError(UserError):
    """A problem to report in one line, with exit status 1."""


@dataclass(frozen=True)
class RunRequest:
    days: list[dt.date]
    models: list[str]


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def latest_day() -> dt.date:
    """The latest daily partition: yesterday (UTC), as a day is evaluated once it is over."""
    return today_utc() - dt.timedelta(days=1)


def date_range(start: dt.date, end: dt.date, settings: Settings) -> list[dt.date]:
    latest = latest_day()
    if start > end:
        raise CliError(f"--start {start} is after --end {end}")
    if start < settings.start_date:
        raise CliError(
            f"--start {start} is before the first partition {settings.start_date} "
            "(start_date in config.yaml or LLM_EVAL_START_DATE)"
        )
    if end > latest:
        raise CliError(f"--end {end} is after the latest complete day ({latest}, UTC)")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


class Pipeline:
    """The Dagster instance ``make ui`` opens and the jobs of the definitions, for
    materializing partitions in this process."""

    def __init__(self, settings: Settings) -> None:
        from dagster import DagsterInstance

        from llm_eval_pipeline.definitions import build_definitions

        self.database_url = settings.database_url
        if self.database_url:
            from llm_eval_pipeline.cli.database import check_database, ensure_database

            check_database(self.database_url)
            if settings.mlflow_tracking_uri == mlflow_database_url(self.database_url):
                ensure_database(settings.mlflow_tracking_uri)
        # Dagster creates a new sqlite instance's tables on first open; two `llm-eval run`s
        # starting at once must not both do it.
        dagster_home = prepare_dagster_home(settings)
        with exclusive(dagster_home / "instance.lock"):
            self.instance = DagsterInstance.from_config(str(dagster_home))
        self.defs = build_definitions(settings)

    def add_models(self, models: list[str]) -> None:
        """Give each model its partition of the dynamic model dimension."""
        from llm_eval_pipeline.defs.partitions import MODELS_PARTITION

        known = set(self.instance.get_dynamic_partitions(MODELS_PARTITION))
        self.instance.add_dynamic_partitions(
            MODELS_PARTITION, [m for m in models if m not in known]
        )

    def ingest(self, day: dt.date, label: str) -> bool:
        from llm_eval_pipeline.defs.jobs import INGEST_JOB

        return self._execute(INGEST_JOB, day.isoformat(), label)

    def evaluate(self, day: dt.date, model: str, label: str, tags: dict | None = None) -> bool:
        """Materialize the day×model chain (generations through the MLflow run)."""
        from dagster import MultiPartitionKey

        from llm_eval_pipeline.defs.jobs import GENERATION_JOB

        key = MultiPartitionKey({Col.EVAL_DATE: day.isoformat(), Col.MODEL_ID: model})
        return self._execute(GENERATION_JOB, key, label, tags)

    def dashboard(self, label: str) -> bool:
        from llm_eval_pipeline.defs.jobs import DASHBOARD_JOB

        return self._execute(DASHBOARD_JOB, None, label)

    def _execute(self, job_name: str, partition_key, label: str, tags: dict | None = None) -> bool:
        job = self.defs.resolve_job_def(job_name)
        try:
            result = job.execute_in_process(
                partition_key=partition_key,
                instance=self.instance,
                raise_on_error=False,
                run_config=QUIET_LOGS,
                tags=tags,
            )
        except Exception as exc:
            if self.database_url:
                from llm_eval_pipeline.cli.database import connection_lost, is_connection_failure

                if is_connection_failure(exc):
                    raise connection_lost(self.database_url, f"{label} ({job.name})", exc) from exc
            raise
        print(f"{label}: {job.name} run {result.run_id} {'ok' if result.success else 'FAILED'}")
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            user = event.step_failure_data.user_failure_data
            message = user.description if user and user.description else error.message
            print(f"  {event.step_key}: {message.strip()}", file=sys.stderr)
        return result.success


def baseline_first(settings: Settings, models: list[str]) -> list[str]:
    """``models`` (default: every registered one), the baseline first, so that every other
    model's regression check finds the baseline's metrics of the day."""
    specs = ModelRegistry(settings.models_yaml).load()
    registered = [spec.name for spec in specs]
    unknown = [name for name in models if name not in registered]
    if unknown:
        raise CliError(
            f"models {unknown} are not in {settings.models_yaml}; add them with "
            "`llm-eval models add`"
        )
    baseline = next((spec.name for spec in specs if spec.baseline), None)
    return sorted(models or registered, key=lambda name: name != baseline)


def run_pipeline(settings: Settings, request: RunRequest) -> int:
    """Materialize the pipeline for each requested day; print what was written."""
    models = baseline_first(settings, request.models)
    pipeline = Pipeline(settings)
    pipeline.add_models(models)
    failures = 0
    steps = len(request.days) * (1 + len(models)) + 1
    done = 0
    for day in request.days:
        done += 1
        if not pipeline.ingest(day, f"[{done}/{steps}] {day}"):
            failures += 1
            done += len(models)
            continue
        for model in models:
            done += 1
            failures += not pipeline.evaluate(day, model, f"[{done}/{steps}] {day} {model}")
    if not models:
        print(f"No models registered in {settings.models_yaml}: ingestion only.")
    else:
        failures += not pipeline.dashboard(f"[{steps}/{steps}] dashboard")
    print_summary(settings, request.days)
    print_next_steps(settings)
    return 1 if failures else 0


def print_next_steps(settings: Settings) -> None:
    from llm_eval_pipeline.defs.assets.tracking import DASHBOARD_FILE

    dashboard = settings.dashboard_dir / DASHBOARD_FILE
    if dashboard.exists():
        print(f"\nDashboard: {dashboard.as_uri()}")
    print(f"MLflow runs: {redacted_url(settings.mlflow_tracking_uri)}")
    print(
        "Open the UIs: `make ui` (Dagster on http://127.0.0.1:3000, MLflow on "
        "http://127.0.0.1:5000); both use this home: "
        f"LLM_EVAL_HOME={settings.home}"
    )


def build_demo(
    settings: Settings, force: bool = False, names: tuple[str, ...] = DEMO_MODELS
) -> list[str]:
    """Build the demo models ``names`` unless they are there."""
    from llm_eval_pipeline.demo.models import build_demo_models

    built = build_demo_models(settings.models_dir, Path(demo_dataset_path()), force, names=names)
    for model in built:
        state = "built" if model.built else "already built"
        print(f"{model.name}: {state} at {model.path}")
    return [m.name for m in built]
