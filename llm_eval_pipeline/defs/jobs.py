"""Jobs and schedules built from the partitioned assets.

The daily schedule runs the ingestion job for the previous day, the weekly one the Delta
maintenance; every day×model asset
follows through its automation condition (``defs/automation.py``), for every registered
model. (A Dagster job holds assets of one partitioning, so the day×model stages are a job
of their own, which the new-model sensor and ``llm-eval`` use.)
"""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GENERATIONS,
    INPUT_DRIFT,
    METRIC_AGGREGATES,
    METRIC_SLICES,
)
from llm_eval_pipeline.defs.assets.ingest import EXAMPLES_KEY, QUARANTINE_KEY
from llm_eval_pipeline.defs.assets.maintenance import MAINTENANCE_KEY
from llm_eval_pipeline.defs.assets.tracking import DASHBOARD_KEY, MLFLOW_RUNS_KEY

INGEST_JOB = "daily_ingest"
GENERATION_JOB = "evaluate_models"
DASHBOARD_JOB = "refresh_dashboard"
MAINTENANCE_JOB = "maintain_delta_tables"

daily_ingest_job = define_asset_job(
    INGEST_JOB,
    selection=AssetSelection.assets(EXAMPLES_KEY, QUARANTINE_KEY, INPUT_DRIFT.name),
    description="Ingest and validate one day of the evaluation dataset, and compare it "
    "with the previous day's (input drift).",
)

GENERATION_ASSETS = (
    GENERATIONS.name,
    EXAMPLE_METRICS.name,
    METRIC_AGGREGATES.name,
    METRIC_SLICES.name,
    MLFLOW_RUNS_KEY,
)

generation_job = define_asset_job(
    GENERATION_JOB,
    selection=AssetSelection.assets(*GENERATION_ASSETS),
    description="Generate, score, aggregate, slice and log to MLflow one day×model.",
)

dashboard_job = define_asset_job(
    DASHBOARD_JOB,
    selection=AssetSelection.assets(DASHBOARD_KEY),
    description="Render the dashboard over every day and model.",
)


def _status(running: bool) -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED


def daily_ingest_schedule(time_of_day: str, running: bool) -> ScheduleDefinition:
    """The daily ingestion at ``time_of_day`` (HH:MM, UTC), for the previous day's
    partition; ``running`` starts it with the code location (the production deployment,
    where ``dagster-daemon`` runs it), else it waits to be switched on in the UI."""
    hour, minute = (int(part) for part in time_of_day.split(":"))
    return build_schedule_from_partitioned_job(
        daily_ingest_job, hour_of_day=hour, minute_of_hour=minute,
        default_status=_status(running),
    )  # fmt: skip


maintenance_job = define_asset_job(
    MAINTENANCE_JOB,
    selection=AssetSelection.assets(MAINTENANCE_KEY),
    description="Compact, vacuum and checkpoint every Delta table.",
)


def weekly_maintenance_schedule(running: bool) -> ScheduleDefinition:
    """Sundays 04:00 UTC, outside the daily ingestion's default hour; ``running`` as for
    :func:`daily_ingest_schedule`."""
    return ScheduleDefinition(
        name="weekly_delta_maintenance",
        job=maintenance_job,
        cron_schedule="0 4 * * 0",
        execution_timezone="UTC",
        default_status=_status(running),
    )
