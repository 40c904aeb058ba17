"""Jobs and schedules built from the partitioned assets."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from llm_eval_pipeline.defs.assets.ingest import EXAMPLES_KEY, QUARANTINE_KEY

INGEST_JOB = "daily_ingest"

daily_ingest_job = define_asset_job(
    INGEST_JOB,
    selection=AssetSelection.assets(EXAMPLES_KEY, QUARANTINE_KEY),
    description="Ingest and validate one day of the evaluation dataset.",
)

# Runs at 06:00 UTC for that day's partition (the daily partitions end one day ahead).
daily_ingest_schedule = build_schedule_from_partitioned_job(daily_ingest_job, hour_of_day=6)
