"""Delta maintenance on real delta-rs tables: compaction keeps every row, vacuum removes
what no version references (files of a write that never committed included), the
retention has a floor, and the weekly Dagster job records files before and after."""

from pathlib import Path

import pytest
from dagster import materialize

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.defs.assets.maintenance import delta_maintenance
from llm_eval_pipeline.defs.resources import DeltaStoreResource
from llm_eval_pipeline.delta.files import partition_folder, write_data_file
from llm_eval_pipeline.delta.maintenance import data_files, maintain_table
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.spark.delta_writer import data_schema
from llm_eval_pipeline_tests.delta.writer import DAY, generations

MODELS = ("m1", "m2")


def small_files(store: DeltaStore, files_per_partition: int = 5) -> None:
    """Each model's partition committed as ``files_per_partition`` files of 4 rows, then
    rewritten once (the replaced files stay on disk until vacuumed)."""
    schema = data_schema(GENERATIONS)
    for round_ in ("old", "new"):
        for model in MODELS:
            values = {Col.EVAL_DATE: DAY.isoformat(), Col.MODEL_ID: model}
            table = generations(model, 4 * files_per_partition, round_)
            batches = table.select(schema.names).cast(schema).to_batches(max_chunksize=4)
            files = [
                write_data_file(
                    [b], schema, str(store.path(GENERATIONS)), values, f"{round_}{i}.parquet"
                )
                for i, b in enumerate(batches)
            ]
            store.commit_files(GENERATIONS, files, {Col.EVAL_DATE: DAY, Col.MODEL_ID: model})


def rows(store: DeltaStore) -> list[dict]:
    return (
        store.read_arrow(GENERATIONS)
        .sort_by([(Col.MODEL_ID, "ascending"), (Col.EXAMPLE_ID, "ascending")])
        .to_pylist()
    )


def test_compaction_and_vacuum_keep_every_row_and_drop_every_stray_file(tmp_path: Path) -> None:
    store = DeltaStore(tmp_path / "delta")
    small_files(store)
    # a write that never committed: two batches written, then the task died
    schema = data_schema(GENERATIONS)
    values = {Col.EVAL_DATE: DAY.isoformat(), Col.MODEL_ID: "m1"}

    def dying():
        yield from (
            generations("m1", 8).select(schema.names).cast(schema).to_batches(max_chunksize=4)
        )
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        write_data_file(dying(), schema, str(store.path(GENERATIONS)), values, "lost.parquet")
    stray = store.path(GENERATIONS) / partition_folder(values) / "lost.parquet"
    assert stray.exists()
    before = rows(store)
    report = maintain_table(store.path(GENERATIONS), GENERATIONS, 0, allow_short_retention=True)
    assert report is not None
    assert (report.files_before, report.referenced_before) == (21, 10)  # 2 rounds × 10 + stray
    assert report.compacted_removed == 10 and report.compacted_added == 2
    assert (
        report.referenced_after == 2
        and report.files_after == data_files(store.path(GENERATIONS)) == 2
    )
    assert report.vacuumed == 21 and not stray.exists()  # all but the 2 compacted
    assert rows(store) == before and len(before) == 40
    assert (store.path(GENERATIONS) / "_delta_log" / "_last_checkpoint").exists()


def test_the_retention_has_a_floor(tmp_path: Path) -> None:
    store = DeltaStore(tmp_path / "delta")
    store.write_partition(
        GENERATIONS, generations("m1", 2), {Col.EVAL_DATE: DAY, Col.MODEL_ID: "m1"}
    )
    with pytest.raises(UserError, match="below the 1 h running readers need"):
        maintain_table(store.path(GENERATIONS), GENERATIONS, 0)
    assert maintain_table(tmp_path / "none", GENERATIONS, 24) is None


def test_the_maintenance_asset_records_files_before_and_after(tmp_path: Path) -> None:
    store = DeltaStore(tmp_path / "delta")
    small_files(store)
    resource = DeltaStoreResource(root=str(store.root), engine="deltars", retention_hours=1)
    result = materialize([delta_maintenance], resources={"delta": resource})
    assert result.success
    metadata = result.asset_materializations_for_node("delta_maintenance")[0].metadata
    table = metadata["per_table"].value[GENERATIONS.name]
    # the replaced and compacted files are younger than the retention: kept for readers
    assert (table["referenced_before"], table["referenced_after"]) == (10, 2)
    assert table["files_before"] == 20 and table["files_after"] == 22 and table["vacuumed"] == 0
    assert metadata["tables"].value == 1 and metadata["retention_hours"].value == 1


def test_the_weekly_schedule_runs_the_maintenance_job(home) -> None:
    from llm_eval_pipeline.definitions import build_definitions

    defs = build_definitions(home)
    schedule = defs.resolve_schedule_def("weekly_delta_maintenance")
    assert schedule.cron_schedule == "0 4 * * 0"
    job = defs.resolve_job_def(schedule.job_name)
    assert [n.name for n in job.graph.nodes] == ["delta_maintenance"]
