"""The code location loads, with the partitions, jobs and schedule users see in the UI."""

from pathlib import Path

from dagster import AssetKey, DagsterInstance, Definitions

from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES
from llm_eval_pipeline.definitions import build_definitions
from llm_eval_pipeline.defs.jobs import GENERATION_JOB, INGEST_JOB
from llm_eval_pipeline.defs.partitions import (
    MODELS_PARTITION,
    daily_partitions,
    day_model_partitions,
)
from llm_eval_pipeline.settings import Settings


def test_module_level_definitions_load() -> None:
    """``defs`` is built when Dagster loads it, from this process's settings."""
    from llm_eval_pipeline import definitions

    Definitions.validate_loadable(definitions.defs())


def test_the_configured_start_date_reaches_every_partitioned_asset_and_job(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.yaml").write_text("start_date: 2025-03-01\n")
    defs = build_definitions(Settings.load(env={"LLM_EVAL_HOME": str(tmp_path)}))
    starts = {
        spec.key.to_user_string(): str(spec.partitions_def)
        for spec in defs.resolve_all_asset_specs()
        if spec.partitions_def is not None
    }
    assert len(starts) == 8 and all("starting 2025-03-01" in s for s in starts.values())
    for job in (INGEST_JOB, GENERATION_JOB):
        assert "starting 2025-03-01" in str(defs.resolve_job_def(job).partitions_def)


def test_assets_checks_jobs_and_schedule(home: Settings) -> None:
    defs = build_definitions(home)
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert {AssetKey(EVAL_EXAMPLES.name), AssetKey(QUARANTINED_EXAMPLES.name)} <= keys
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    examples = specs[AssetKey(EVAL_EXAMPLES.name)]
    assert examples.description and "delta" in examples.kinds
    assert examples.partitions_def == daily_partitions
    columns = [c.name for c in examples.metadata["dagster/column_schema"].columns]
    assert columns == EVAL_EXAMPLES.columns
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {"rows_balance", "no_regression_vs_baseline", "enough_examples"} <= checks
    job = defs.resolve_job_def(INGEST_JOB)
    assert job.partitions_def == daily_partitions
    schedule = defs.resolve_schedule_def(f"{INGEST_JOB}_schedule")
    assert schedule.cron_schedule == "0 6 * * *"


def test_daily_partitions_run_from_the_configured_date_to_yesterday() -> None:
    import datetime as dt

    keys = daily_partitions.get_partition_keys()
    assert keys[0] == Settings.load().start_date.isoformat()
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert keys[-1] == yesterday.isoformat()


def test_day_by_model_partitions_follow_registered_models() -> None:
    instance = DagsterInstance.ephemeral()
    assert day_model_partitions.get_partition_keys(dynamic_partitions_store=instance) == []
    instance.add_dynamic_partitions(MODELS_PARTITION, ["tiny-gpt2", "tiny_gpt2.v2"])
    keys = day_model_partitions.get_partition_keys(dynamic_partitions_store=instance)
    days = daily_partitions.get_partition_keys()
    assert len(keys) == 2 * len(days)
    assert f"{days[0]}|tiny-gpt2" in keys and f"{days[-1]}|tiny_gpt2.v2" in keys
