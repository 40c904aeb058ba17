"""The ingestion asset through real Dagster materializations, Spark and delta-rs."""

import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col, Reason
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline_tests.conftest import write_jsonl

DAY = "2026-11-20"
OTHER_DAY = "2026-11-21"
GOOD = [
    {"question": f"What is {i} plus {i}?", "answer": str(2 * i), "task": "qa"} for i in range(6)
]


def settings_with(home: Settings, dataset: Path) -> Settings:
    return home.with_dataset(dataset, "arith")


def run_day(settings: Settings, day: str, instance: DagsterInstance | None = None, **kwargs):
    return materialize(
        [ingest_examples],
        partition_key=day,
        resources=build_resources(settings),
        instance=instance or DagsterInstance.ephemeral(),
        **kwargs,
    )


def metadata(result, key: str) -> dict[str, object]:
    (event,) = [
        m
        for m in result.asset_materializations_for_node("ingest_examples")
        if m.asset_key == AssetKey(key)
    ]
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def test_materializing_a_day_writes_both_tables_and_passes_the_check(
    home: Settings, tmp_path: Path, spark
) -> None:
    path = tmp_path / "data" / "arith.jsonl"
    write_jsonl(path, GOOD)
    with path.open("a") as f:
        f.write('{"question": "broken\n')
        f.write(json.dumps({"question": "", "answer": "x"}) + "\n")
    settings = settings_with(home, path)
    result = run_day(settings, DAY)
    assert result.success

    examples = metadata(result, EVAL_EXAMPLES.name)
    assert (examples["rows_in"], examples["rows_valid"], examples["rows_quarantined"]) == (8, 6, 2)
    assert examples["quarantined_unparsable"] == 1 and examples["quarantined_empty_field"] == 1
    assert examples["dagster/row_count"] == 6
    assert examples["delta_version"] == 1  # version 0 created the table, empty
    assert examples["aliases_used"] == {"question": "prompt", "answer": "references"}
    assert "What is 0 plus 0?" in examples["preview"]
    assert metadata(result, QUARANTINED_EXAMPLES.name)["dagster/row_count"] == 2

    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.check_name == "rows_balance"
    assert check.metadata["stored_valid"].value + check.metadata["stored_quarantined"].value == 8

    store = DeltaStore(settings.delta_dir)
    stored = store.read(
        spark, EVAL_EXAMPLES, {Col.EVAL_DATE: __import__("datetime").date(2026, 11, 20)}
    )
    assert stored.count() == 6
    reasons = sorted(r[Col.REASON] for r in store.read(spark, QUARANTINED_EXAMPLES).collect())
    assert reasons == [Reason.EMPTY_FIELD, Reason.UNPARSABLE]


def test_rematerializing_is_idempotent_and_days_are_independent(
    home: Settings, tmp_path: Path, spark
) -> None:
    settings = settings_with(home, write_jsonl(tmp_path / "data" / "arith.jsonl", GOOD))
    instance = DagsterInstance.ephemeral()
    for day in (DAY, DAY, OTHER_DAY, DAY):
        assert run_day(settings, day, instance).success
    store = DeltaStore(settings.delta_dir)
    per_day = {
        str(r[Col.EVAL_DATE]): r["count"]
        for r in store.read(spark, EVAL_EXAMPLES).groupBy(Col.EVAL_DATE).count().collect()
    }
    assert per_day == {DAY: 6, OTHER_DAY: 6}
    ids = store.read_arrow(EVAL_EXAMPLES).column(Col.EXAMPLE_ID).to_pylist()
    assert len(set(ids)) == 6  # the same examples keep their ids across days
    assert store.version(EVAL_EXAMPLES) == 4  # creation, then one commit per run


def test_drop_folder_adds_files_for_its_day_only(home: Settings, tmp_path: Path, spark) -> None:
    settings = settings_with(home, write_jsonl(tmp_path / "data" / "arith.jsonl", GOOD))
    write_jsonl(settings.incoming / DAY / "extra.jsonl", [{"prompt": "Extra?", "references": "y"}])
    assert run_day(settings, DAY).success
    assert run_day(settings, OTHER_DAY).success
    store = DeltaStore(settings.delta_dir)
    rows = store.read(spark, EVAL_EXAMPLES).where(f"{Col.PROMPT} = 'Extra?'").collect()
    assert [str(r[Col.EVAL_DATE]) for r in rows] == [DAY]


def test_an_unreadable_file_fails_the_run_and_keeps_the_previous_partition(
    home: Settings, tmp_path: Path, spark
) -> None:
    path = write_jsonl(tmp_path / "data" / "arith.jsonl", GOOD)
    settings = settings_with(home, path)
    assert run_day(settings, DAY).success
    corrupt = settings.incoming / DAY / "broken.parquet"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"PAR1 not really parquet")
    result = run_day(settings, DAY, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert str(corrupt) in description and "cannot read as parquet" in description
    assert DeltaStore(settings.delta_dir).read(spark, EVAL_EXAMPLES).count() == 6


def test_no_dataset_configured_is_a_clear_failure(home: Settings, spark) -> None:
    result = run_day(home, DAY, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "no dataset for 2026-11-20" in failure.step_failure_data.user_failure_data.description


@pytest.mark.parametrize("name", ["eval_examples", "quarantined_examples"])
def test_tables_live_under_home_delta(home: Settings, tmp_path: Path, name: str, spark) -> None:
    settings = settings_with(home, write_jsonl(tmp_path / "data" / "arith.jsonl", GOOD))
    assert run_day(settings, DAY).success
    assert (settings.home / "delta" / name / "_delta_log").is_dir()
