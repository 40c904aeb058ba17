"""Distributed Delta writes (``spark/delta_writer.py`` + ``DeltaStore.commit_files``) on
the real SparkSession and real delta-rs tables: the tasks write the files, the driver
commits them once; faults commit nothing."""

import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.delta.files import partition_folder, write_data_file
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.spark.delta_writer import data_schema
from llm_eval_pipeline.stages import write_spark_partition
from llm_eval_pipeline_tests.delta.writer import DAY, generations

MODEL = "model a/b=c"  # a value the folder name must escape
PARTITION = {Col.EVAL_DATE: DAY, Col.MODEL_ID: MODEL}
POISON = "ex-kill"


def frame(spark, rows: int, tag: str = "", parts: int = 4):
    table = generations(MODEL, rows, tag)
    return spark.createDataFrame(table.to_pandas(), schema=_spark_schema()).repartition(parts)


def _spark_schema():
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(GENERATIONS.schema)


def referenced(store: DeltaStore) -> set[str]:
    return set(DeltaTable(str(store.path(GENERATIONS))).file_uris())


def on_disk(store: DeltaStore) -> set[str]:
    folder = store.path(GENERATIONS) / partition_folder(
        {Col.EVAL_DATE: DAY.isoformat(), Col.MODEL_ID: MODEL}
    )
    return {str(p) for p in folder.glob("*.parquet")} if folder.exists() else set()


def rows_of(store: DeltaStore) -> list[dict]:
    table = store.read_arrow(GENERATIONS, PARTITION).sort_by(Col.EXAMPLE_ID)
    return table.select(GENERATIONS.columns).to_pylist()


def test_the_tasks_files_equal_the_driver_side_write(tmp_path: Path, spark) -> None:
    tasks, driver = DeltaStore(tmp_path / "tasks"), DeltaStore(tmp_path / "driver")
    version = write_spark_partition(tasks, spark, GENERATIONS, frame(spark, 500), PARTITION)
    driver.write_partition(GENERATIONS, generations(MODEL, 500), PARTITION)
    assert version == 1 and rows_of(tasks) == rows_of(driver) and len(rows_of(tasks)) == 500
    assert len(referenced(tasks)) == 4  # one file per Spark partition
    assert store_rows_in_spark(tasks, spark) == 500
    # a rewrite replaces the partition in one commit: the old files are no longer read
    first = referenced(tasks)
    rewrite = frame(spark, 7, "v2", 2)
    assert write_spark_partition(tasks, spark, GENERATIONS, rewrite, PARTITION) == 2
    assert len(rows_of(tasks)) == 7 and {r[Col.OUTPUT][-2:] for r in rows_of(tasks)} == {"v2"}
    assert not first & referenced(tasks)


def store_rows_in_spark(store: DeltaStore, spark) -> int:
    return store.read(spark, GENERATIONS, PARTITION).count()


def test_a_failing_check_commits_nothing_and_removes_the_files(tmp_path: Path, spark) -> None:
    store = DeltaStore(tmp_path / "delta")
    write_spark_partition(store, spark, GENERATIONS, frame(spark, 20, "kept"), PARTITION)
    kept = rows_of(store)

    def refuse(written, rows: int, nulls) -> None:
        assert written.count() == rows == 30 and nulls[Col.ERROR] == 30
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        write_spark_partition(store, spark, GENERATIONS, frame(spark, 30), PARTITION, refuse)
    assert rows_of(store) == kept and on_disk(store) == {
        p.removeprefix("file://") for p in referenced(store)
    }


def test_rows_outside_the_partition_fail_the_write_and_commit_nothing(
    tmp_path: Path, spark
) -> None:
    store = DeltaStore(tmp_path / "delta")
    write_spark_partition(store, spark, GENERATIONS, frame(spark, 5, "kept"), PARTITION)
    stray = generations("someone-else", 3).to_pandas()
    mixed = pd.concat([generations(MODEL, 3).to_pandas(), stray])
    with pytest.raises(Exception, match="rows for model_id in .*someone-else"):
        write_spark_partition(
            store, spark, GENERATIONS, spark.createDataFrame(mixed, _spark_schema()), PARTITION
        )
    assert [r[Col.OUTPUT] for r in rows_of(store)][0].endswith("kept")
    assert DeltaTable(str(store.path(GENERATIONS))).version() == 1


def _kill_on_poison(batches):
    for batch in batches:
        if (batch[Col.EXAMPLE_ID] == POISON).any():
            os.kill(os.getpid(), 9)  # the Python worker dies in the middle of the task
        yield batch


def test_a_killed_python_worker_commits_nothing_and_the_next_run_completes(
    tmp_path: Path, spark
) -> None:
    store = DeltaStore(tmp_path / "delta")
    write_spark_partition(store, spark, GENERATIONS, frame(spark, 10, "before"), PARTITION)
    before = rows_of(store)
    table = generations(MODEL, 400, "doomed").to_pandas()
    table.loc[350, Col.EXAMPLE_ID] = POISON
    doomed = (
        spark.createDataFrame(table, _spark_schema())
        .coalesce(1)
        .mapInPandas(_kill_on_poison, _spark_schema())
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "50")
    try:
        with pytest.raises(Exception):  # noqa: B017 - Spark wraps the lost worker its own way
            write_spark_partition(store, spark, GENERATIONS, doomed, PARTITION)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert rows_of(store) == before
    write_spark_partition(store, spark, GENERATIONS, frame(spark, 12, "after"), PARTITION)
    assert len(rows_of(store)) == 12


def test_two_commits_of_one_partition_at_once_leave_exactly_one_set(tmp_path: Path) -> None:
    store = DeltaStore(tmp_path / "delta")
    store.write_partition(GENERATIONS, generations(MODEL, 1), PARTITION)
    schema = data_schema(GENERATIONS)
    values = {Col.EVAL_DATE: DAY.isoformat(), Col.MODEL_ID: MODEL}
    sets = {}
    for writer in ("w1", "w2"):
        table = generations(MODEL, 6, writer).select(schema.names).cast(schema)
        sets[writer] = [
            write_data_file(
                [batch], schema, str(store.path(GENERATIONS)), values, f"{writer}-{i}.parquet"
            )
            for i, batch in enumerate(table.to_batches(max_chunksize=3))
        ]
    barrier, errors = threading.Barrier(2), []

    def commit(writer: str) -> None:
        barrier.wait()
        try:
            store.commit_files(GENERATIONS, sets[writer], PARTITION)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(w,)) for w in sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    names = {Path(uri).name for uri in referenced(store)}
    assert names in ({"w1-0.parquet", "w1-1.parquet"}, {"w2-0.parquet", "w2-1.parquet"})
    tags = {r[Col.OUTPUT].split()[-1] for r in rows_of(store)}
    assert len(rows_of(store)) == 6 and len(tags) == 1


def test_an_empty_frame_clears_the_partition(tmp_path: Path, spark) -> None:
    store = DeltaStore(tmp_path / "delta")
    write_spark_partition(store, spark, GENERATIONS, frame(spark, 5), PARTITION)
    empty = spark.createDataFrame([], _spark_schema())
    write_spark_partition(store, spark, GENERATIONS, empty, PARTITION)
    assert rows_of(store) == [] and not referenced(store)


def test_file_statistics_follow_the_rows(tmp_path: Path) -> None:
    schema = pa.schema([("n", pa.int64()), ("x", pa.float64()), ("s", pa.string())])
    batches = [
        pa.record_batch([[3, None], [float("nan"), 2.5], ["a", None]], schema=schema),
        pa.record_batch([[-1], [1.0], ["b"]], schema=schema),
    ]
    written = write_data_file(batches, schema, str(tmp_path), {"d": "x y"}, "f.parquet")
    assert written is not None and written.path == "d=x%20y/f.parquet" and written.rows == 3
    import json

    stats = json.loads(written.stats)
    assert stats["minValues"] == {"n": -1, "x": 1.0} and stats["maxValues"] == {"n": 3, "x": 2.5}
    assert stats["nullCount"] == {"n": 1, "x": 0, "s": 1}
    assert write_data_file([], schema, str(tmp_path), {"d": "z"}, "g.parquet") is None
    assert not (tmp_path / "d=z").exists()
