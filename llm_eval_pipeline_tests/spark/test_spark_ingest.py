"""Ingestion on the executors (``spark/ingest.py``) gives what the driver path gives:
the same rows in eval_examples and quarantined_examples, the same reasons, counts and
aliases, on every readable file of the bad-input corpus and on generated sources with
duplicates across files, a multi-row-group Parquet file and a UTF-8 byte-order mark."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_eval_pipeline.core.dataset import DatasetReadError, ingest
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.stages import ingest_day

DAY = dt.date(2026, 11, 20)
BAD_INPUTS = Path(__file__).parents[1] / "data" / "bad_inputs"


def readable(path: Path) -> bool:
    try:
        ingest([path], DAY)
    except DatasetReadError:
        return False
    return True


def run(tmp_path: Path, spark, incoming: Path, name: str, threshold: int | None):
    store = DeltaStore(tmp_path / name)
    done = ingest_day(
        store, spark, DAY, static_path=None, incoming=incoming, allowed_roots=[incoming],
        dataset_name="d", max_field_chars=200, default_task="qa",
        spark_ingest_min_bytes=threshold,
    )  # fmt: skip
    tables = {
        spec.name: sorted(
            store.read_arrow(spec, {Col.EVAL_DATE: DAY}).to_pylist(),
            key=lambda r: (r[Col.SOURCE_FILE], r[Col.SOURCE_ROW]),
        )
        for spec in (EVAL_EXAMPLES, QUARANTINED_EXAMPLES)
    }
    return done, tables


def both_ways(tmp_path: Path, spark, incoming: Path):
    driver, driver_tables = run(tmp_path, spark, incoming, "driver", None)
    tasks, task_tables = run(tmp_path, spark, incoming, "tasks", 0)
    assert not driver.on_executors and tasks.on_executors
    for name, rows in driver_tables.items():
        for got, want in zip(task_tables[name], rows, strict=True):
            assert got == want, (name, got, want)
    for field in ("rows_in", "rows_per_source", "reasons", "aliases_used", "stored_valid"):
        assert getattr(tasks, field) == getattr(driver, field), field
    assert tasks.balanced and driver.balanced
    return tasks, task_tables


def test_the_bad_input_corpus_ingests_alike_on_the_executors(
    tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_eval_pipeline.spark import ingest as spark_ingest

    monkeypatch.setattr(spark_ingest, "RANGE_BYTES", 64)  # several tasks per file
    incoming = tmp_path / "incoming"
    day = incoming / DAY.isoformat()
    day.mkdir(parents=True)
    files = [p for p in sorted(BAD_INPUTS.iterdir()) if p.suffix != ".yaml" and readable(p)]
    for path in files:
        shutil.copy(path, day / path.name)
    done, tables = both_ways(tmp_path, spark, incoming)
    assert len(files) >= 20 and done.rows_in > 40
    assert len(tables[QUARANTINED_EXAMPLES.name]) > 20  # most of the corpus is bad rows


def test_duplicates_across_files_parquet_row_groups_and_a_bom(tmp_path: Path, spark) -> None:
    incoming = tmp_path / "incoming"
    day = incoming / DAY.isoformat()
    day.mkdir(parents=True)
    rows = [
        {"id": "a", "question": "Q1?", "answer": "A1"},
        {"id": "b", "question": "Q1?", "answer": "A1"},  # same content: duplicate example
        {"id": "b", "question": "Q2?", "answer": "A2"},  # id b came first (and lost)
        {"id": "a", "question": "Q3?", "answer": "A3"},  # id a repeated
        {"question": "Q4?", "answers": ["A4"], "topic": "x"},
        {"prompt": "", "references": ["r"]},
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (day / "one.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\n\n{broken\n")
    (day / "two.jsonl").write_text(text, encoding="utf-8")  # every row repeats one.jsonl's
    table = pa.Table.from_pylist(
        [{"prompt": f"P{i}?", "references": [f"R{i}"], "task": "qa"} for i in range(25)]
        + [{"prompt": "P3?", "references": ["R3"], "task": "qa"}]
    )
    pq.write_table(table, day / "three.parquet", row_group_size=7)  # 4 row groups
    done, tables = both_ways(tmp_path, spark, incoming)
    assert done.rows_in == 7 + 6 + 26
    reasons = done.reasons
    assert (reasons["duplicate_example"], reasons["duplicate_id"]) == (3, 6)
    parquet_dupe = [
        r for r in tables[QUARANTINED_EXAMPLES.name] if r[Col.SOURCE_FILE].endswith("three.parquet")
    ]
    assert [r[Col.SOURCE_ROW] for r in parquet_dupe] == [26]


def test_a_json_array_too_large_for_the_driver_is_refused(
    tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_eval_pipeline.spark import ingest as spark_ingest

    monkeypatch.setattr(spark_ingest, "JSON_ARRAY_MAX_BYTES", 100)
    incoming = tmp_path / "incoming"
    day = incoming / DAY.isoformat()
    day.mkdir(parents=True)
    (day / "big.json").write_text(json.dumps([{"prompt": "p", "references": ["r"]}] * 50))
    with pytest.raises(DatasetReadError, match="big.json: a JSON array .* write it as JSON Lines"):
        run(tmp_path, spark, incoming, "tasks", 0)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 8, 1000])
def test_byte_ranges_number_every_line_once(tmp_path: Path, step: int) -> None:
    from llm_eval_pipeline.spark.ingest import byte_ranges, count_newlines, lines_starting_in

    path = tmp_path / "f.jsonl"
    path.write_bytes(b"a\n\nbc\r\nd\xff\n\nlast")
    ranges = byte_ranges(path.stat().st_size, step)
    counts = [count_newlines(str(path), *r) for r in ranges]
    lines = [
        line
        for i, (start, end) in enumerate(ranges)
        for line in lines_starting_in(str(path), start, end, 1 + sum(counts[:i]))
    ]
    assert lines == [(1, b"a"), (2, b""), (3, b"bc\r"), (4, b"d\xff"), (5, b""), (6, b"last")]
