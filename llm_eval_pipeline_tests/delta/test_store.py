"""The Delta store against real delta-rs tables and the real SparkSession."""

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col
from llm_eval_pipeline.delta.store import DeltaStore, DeltaStoreError, partition_predicate

DAY_A = dt.date(2026, 11, 1)
DAY_B = dt.date(2026, 11, 2)


def examples(day: dt.date, n: int, prompt: str = "q") -> pa.Table:
    rows = [
        {
            Col.EXAMPLE_ID: f"id{i}",
            Col.DATASET: "d",
            Col.TASK: "qa",
            Col.PROMPT: f"{prompt}{i}",
            Col.REFERENCES: ["a", "b"],
            Col.CONTEXT: None,
            Col.METADATA: {"k": str(i)},
            Col.SOURCE_FILE: "f.jsonl",
            Col.SOURCE_ROW: i + 1,
            Col.EVAL_DATE: day,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows, schema=EVAL_EXAMPLES.schema)


@pytest.fixture
def store(tmp_path: Path) -> DeltaStore:
    return DeltaStore(tmp_path / "delta")


def counts(store: DeltaStore, spark) -> dict[dt.date, int]:
    rows = store.read(spark, EVAL_EXAMPLES).groupBy(Col.EVAL_DATE).count().collect()
    return {r[Col.EVAL_DATE]: r["count"] for r in rows}


def test_rewriting_a_partition_replaces_it(store: DeltaStore, spark) -> None:
    v0 = store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 3), {Col.EVAL_DATE: DAY_A})
    v1 = store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 3), {Col.EVAL_DATE: DAY_A})
    assert (v0, v1) == (1, 2)  # version 0 created the table, empty
    assert counts(store, spark) == {DAY_A: 3}
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2, "new"), {Col.EVAL_DATE: DAY_A})
    prompts = sorted(r[Col.PROMPT] for r in store.read(spark, EVAL_EXAMPLES).collect())
    assert prompts == ["new0", "new1"]


def test_writing_day_b_leaves_day_a_untouched(store: DeltaStore, spark) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 3, "a"), {Col.EVAL_DATE: DAY_A})
    before = store.read_arrow(EVAL_EXAMPLES, {Col.EVAL_DATE: DAY_A}).sort_by(Col.EXAMPLE_ID)
    store.write_partition(EVAL_EXAMPLES, examples(DAY_B, 5, "b"), {Col.EVAL_DATE: DAY_B})
    store.write_partition(EVAL_EXAMPLES, examples(DAY_B, 4, "b"), {Col.EVAL_DATE: DAY_B})
    after = store.read_arrow(EVAL_EXAMPLES, {Col.EVAL_DATE: DAY_A}).sort_by(Col.EXAMPLE_ID)
    assert after.equals(before)
    assert counts(store, spark) == {DAY_A: 3, DAY_B: 4}
    one_day = store.read(spark, EVAL_EXAMPLES, {Col.EVAL_DATE: DAY_B})
    assert one_day.count() == 4
    assert {r[Col.EVAL_DATE] for r in one_day.collect()} == {DAY_B}


def test_spark_reads_nested_types_back(store: DeltaStore, spark) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 1), {Col.EVAL_DATE: DAY_A})
    row = store.read(spark, EVAL_EXAMPLES).collect()[0]
    assert row[Col.REFERENCES] == ["a", "b"]
    assert row[Col.METADATA] == {"k": "0"}
    assert row[Col.EVAL_DATE] == DAY_A


def test_empty_write_clears_the_partition(store: DeltaStore, spark) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 3), {Col.EVAL_DATE: DAY_A})
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 0), {Col.EVAL_DATE: DAY_A})
    assert store.read(spark, EVAL_EXAMPLES, {Col.EVAL_DATE: DAY_A}).count() == 0


def test_schema_evolution_adds_a_column_old_partitions_read_null(store: DeltaStore, spark) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2), {Col.EVAL_DATE: DAY_A})
    wider = examples(DAY_B, 2).append_column("difficulty", pa.array(["easy", "hard"]))
    store.write_partition(EVAL_EXAMPLES, wider, {Col.EVAL_DATE: DAY_B})
    frame = store.read(spark, EVAL_EXAMPLES)
    assert "difficulty" in frame.columns
    by_day = {}
    for row in frame.collect():
        by_day.setdefault(row[Col.EVAL_DATE], []).append(row["difficulty"])
    assert by_day[DAY_A] == [None, None]
    assert sorted(by_day[DAY_B]) == ["easy", "hard"]
    # the old partition can still be rewritten with the narrower data
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 1), {Col.EVAL_DATE: DAY_A})
    assert counts(store, spark) == {DAY_A: 1, DAY_B: 2}


def test_a_table_older_than_its_spec_reads_the_new_columns_as_null(
    store: DeltaStore, spark
) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2), {Col.EVAL_DATE: DAY_A})
    wider = dataclasses.replace(
        EVAL_EXAMPLES, schema=EVAL_EXAMPLES.schema.append(pa.field("difficulty", pa.string()))
    )
    frame = store.read(spark, wider, {Col.EVAL_DATE: DAY_A})
    assert frame.columns[-1] == "difficulty"
    assert [r["difficulty"] for r in frame.collect()] == [None, None]


def test_rows_outside_the_partition_are_refused(store: DeltaStore) -> None:
    with pytest.raises(DeltaStoreError, match="2026-11-02"):
        store.write_partition(EVAL_EXAMPLES, examples(DAY_B, 1), {Col.EVAL_DATE: DAY_A})
    with pytest.raises(DeltaStoreError, match="must name exactly eval_date"):
        store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 1), {"day": DAY_A})
    assert not store.exists(EVAL_EXAMPLES)


def test_data_missing_a_column_is_refused(store: DeltaStore) -> None:
    with pytest.raises(DeltaStoreError, match="lacks columns"):
        store.write_partition(
            EVAL_EXAMPLES, examples(DAY_A, 1).drop_columns([Col.PROMPT]), {Col.EVAL_DATE: DAY_A}
        )


def test_pandas_and_spark_inputs(store: DeltaStore, spark) -> None:
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2).to_pandas(), {Col.EVAL_DATE: DAY_A})
    frame = store.read(spark, EVAL_EXAMPLES, {Col.EVAL_DATE: DAY_A})
    store.write_partition(EVAL_EXAMPLES, frame, {Col.EVAL_DATE: DAY_A})
    assert counts(store, spark) == {DAY_A: 2}


def test_missing_table_reads_empty_with_its_schema(store: DeltaStore, spark) -> None:
    frame = store.read(spark, QUARANTINED_EXAMPLES)
    assert frame.count() == 0
    assert frame.columns == QUARANTINED_EXAMPLES.columns
    assert store.version(QUARANTINED_EXAMPLES) is None


def test_partition_predicate_quotes_values() -> None:
    assert partition_predicate({"eval_date": DAY_A, "model_id": "o'brien"}) == (
        "eval_date = '2026-11-01' AND model_id = 'o''brien'"
    )


def _spark_has_delta(spark) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
        return True
    except Exception:
        return False


def test_spark_engine_round_trip(tmp_path: Path, spark) -> None:
    if not _spark_has_delta(spark):
        pytest.skip(
            "spark Delta engine: the Delta jars are not on Spark's classpath here (Maven is "
            "unreachable); this test runs where delta-spark's jars are installed"
        )
    store = DeltaStore(tmp_path / "delta", engine="spark")
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2), {Col.EVAL_DATE: DAY_A}, spark=spark)
    store.write_partition(EVAL_EXAMPLES, examples(DAY_A, 2), {Col.EVAL_DATE: DAY_A}, spark=spark)
    assert store.read(spark, EVAL_EXAMPLES).count() == 2


def test_spark_engine_writes_reach_spark_from_every_asset(home, tmp_path: Path, spark) -> None:
    """The plumbing of ``delta_engine: spark``: a real materialization with that engine
    hands its rows to Spark's ``format("delta")`` writer. Where the Delta jars are on the
    classpath the partition is written; here (no jars, Maven unreachable) the write fails
    with the message that says so, not for want of a SparkSession."""

    from dagster import materialize

    from llm_eval_pipeline.defs.assets.ingest import ingest_examples
    from llm_eval_pipeline.defs.resources import build_resources
    from llm_eval_pipeline_tests.conftest import write_jsonl

    rows = [{"prompt": f"q{i}?", "references": [f"a{i}"]} for i in range(3)]
    settings = dataclasses.replace(
        home.with_dataset(write_jsonl(tmp_path / "data" / "d.jsonl", rows)), delta_engine="spark"
    )
    # The run's one SparkSession keeps its configuration: the Delta catalog that the
    # cluster profile adds would break every later test here, where the jars are missing.
    resources = {**build_resources(settings), "spark": build_resources(home)["spark"]}
    assert resources["delta"].store().spark is spark
    result = materialize(
        [ingest_examples], partition_key="2026-11-01", resources=resources, raise_on_error=False
    )
    catalog = spark.conf.get("spark.sql.catalog.spark_catalog", "")
    assert "DeltaCatalog" not in catalog or _spark_has_delta(spark)
    if _spark_has_delta(spark):
        assert result.success
        assert DeltaStore(settings.delta_dir).read_arrow(EVAL_EXAMPLES).num_rows == 3
    else:
        (failure,) = result.get_step_failure_events()
        message = str(failure.step_failure_data.error)
        assert "needs the Delta jars on Spark's classpath" in message, message
        assert "needs a SparkSession" not in message
