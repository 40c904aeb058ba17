"""The Dagster code location: assets, checks, jobs, schedules and resources.

``dagster dev`` (``make ui``) loads ``defs``, which reads the settings and builds the
definitions only then (importing this module reads nothing); tests and the CLI call
:func:`build_definitions` with the settings they want.
"""

from __future__ import annotations

import dagster as dg
from dagster import Definitions, in_process_executor

from llm_eval_pipeline.defs.assets import ALL_ASSETS
from llm_eval_pipeline.defs.jobs import (
    daily_ingest_job,
    daily_ingest_schedule,
    dashboard_job,
    generation_job,
    maintenance_job,
    weekly_maintenance_schedule,
)
from llm_eval_pipeline.defs.partitions import with_start_date
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.defs.sensors import automation_sensor, new_model_sensor
from llm_eval_pipeline.settings import Settings, get_settings


def build_definitions(settings: Settings) -> Definitions:
    production = settings.database_url is not None
    return Definitions(
        assets=[with_start_date(asset, settings.start_date) for asset in ALL_ASSETS],
        jobs=[daily_ingest_job, generation_job, dashboard_job, maintenance_job],
        schedules=[
            daily_ingest_schedule(settings.daily_schedule_time, running=production),
            weekly_maintenance_schedule(running=production),
        ],
        sensors=[new_model_sensor, automation_sensor],
        resources=build_resources(settings),
        # Every step uses Spark; in one process they share one SparkSession, where the
        # default executor would start a process (and a JVM) per step.
        executor=in_process_executor,
    )


@dg.definitions
def defs() -> Definitions:
    """The definitions for this process's settings (``LLM_EVAL_HOME``, ``config.yaml``)."""
    return build_definitions(get_settings())
