"""Dataset reading and validation (pure Python: no Spark, no Dagster)."""

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_eval_pipeline.core.dataset import (
    DatasetReadError,
    check_confined,
    content_id,
    discover_sources,
    ingest,
)
from llm_eval_pipeline.core.schema import Col, Reason
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline_tests.conftest import write_jsonl

DAY = dt.date(2026, 11, 20)
GOOD = {"prompt": "What is the capital of France?", "references": ["Paris"], "task": "qa"}


def run(*sources: Path, **kwargs: object):
    result = ingest(list(sources), DAY, **kwargs)  # type: ignore[arg-type]
    assert result.balanced, "rows in must equal valid + quarantined"
    return result


def only_quarantined(result) -> dict[str, object]:
    rows = result.quarantined.to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


def test_jsonl_rows_are_normalised(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "evals.jsonl",
        [
            {"id": 7, "question": "Largest planet?", "answer": "Jupiter", "passage": "Jupiter..."},
            {**GOOD, "metadata": {"topic": "geo", "level": 2}, "difficulty": "easy"},
        ],
    )
    result = run(path)
    assert result.rows_in == 2 and result.examples.num_rows == 2
    first, second = result.examples.to_pylist()
    assert first[Col.PROMPT] == "Largest planet?"
    assert first[Col.REFERENCES] == ["Jupiter"]
    assert first[Col.CONTEXT] == "Jupiter..."
    assert first[Col.TASK] == "qa"
    assert first[Col.DATASET] == "evals"
    assert first[Col.SOURCE_ROW] == 1 and first[Col.SOURCE_FILE] == str(path)
    assert first[Col.EVAL_DATE] == DAY
    assert dict(first[Col.METADATA]) == {"source_id": "7"}
    assert dict(second[Col.METADATA]) == {"topic": "geo", "level": "2", "difficulty": "easy"}
    assert result.aliases_used == {
        "question": "prompt",
        "answer": "references",
        "passage": "context",
    }


def test_example_id_is_a_stable_content_hash(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [GOOD])
    day1 = ingest([path], DAY).examples.column(Col.EXAMPLE_ID).to_pylist()
    day2 = ingest([path], DAY + dt.timedelta(days=1)).examples.column(Col.EXAMPLE_ID).to_pylist()
    assert day1 == day2 == [content_id("qa", GOOD["prompt"], None, ["Paris"])]
    assert content_id("qa", "q", None, ["a"]) != content_id("qa", "q", None, ["b"])


def test_json_array_csv_parquet_and_delta_sources(tmp_path: Path) -> None:
    json_path = tmp_path / "a.json"
    json_path.write_text(json.dumps([{"prompt": "Q1?", "answers": ["A1", "a one"]}]))
    csv_path = tmp_path / "b.csv"
    csv_path.write_text(
        'question,answer,context\n"Q2,\nwith a newline?","[""A2"", ""a two""]",ctx\nQ3?,A3,\n'
    )
    parquet_path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"input": ["Q4?"], "target": [["A4"]], "task": ["qa"]}), parquet_path)
    from deltalake import write_deltalake

    delta_path = tmp_path / "d_table"
    write_deltalake(str(delta_path), pa.table({"prompt": ["Q5?"], "reference": ["A5"]}))

    result = run(json_path, csv_path, parquet_path, delta_path)
    rows = {r[Col.PROMPT]: r for r in result.examples.to_pylist()}
    assert set(rows) == {"Q1?", "Q2,\nwith a newline?", "Q3?", "Q4?", "Q5?"}
    assert rows["Q1?"][Col.REFERENCES] == ["A1", "a one"]
    assert rows["Q2,\nwith a newline?"][Col.REFERENCES] == ["A2", "a two"]
    assert rows["Q2,\nwith a newline?"][Col.SOURCE_ROW] == 2
    assert rows["Q3?"][Col.SOURCE_ROW] == 4  # the quoted newline made record 1 two lines
    assert rows["Q3?"][Col.CONTEXT] is None
    assert rows["Q5?"][Col.DATASET] == "d_table"
    assert result.rows_per_source == {
        str(json_path): 1,
        str(csv_path): 2,
        str(parquet_path): 1,
        str(delta_path): 1,
    }


def test_byte_order_marks_are_honoured(tmp_path: Path) -> None:
    line = json.dumps({"prompt": "Où est Genève?", "references": ["Suisse"]}, ensure_ascii=False)
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes(line.encode("utf-16"))
    utf8sig = tmp_path / "u8.jsonl"
    utf8sig.write_bytes(line.encode("utf-8-sig"))
    result = ingest([utf16], DAY)
    assert result.examples.column(Col.PROMPT).to_pylist() == ["Où est Genève?"]
    result = ingest([utf8sig], DAY)
    assert result.examples.column(Col.PROMPT).to_pylist() == ["Où est Genève?"]


BAD_ROWS = [
    ('{"prompt": "truncated', Reason.UNPARSABLE, ""),
    ("[1, 2, 3]", Reason.NOT_A_RECORD, ""),
    ('{"references": ["x"]}', Reason.MISSING_FIELD, "prompt"),
    ('{"prompt": null, "references": ["x"]}', Reason.MISSING_FIELD, "prompt"),
    ('{"prompt": "   ", "references": ["x"]}', Reason.EMPTY_FIELD, "prompt"),
    ('{"prompt": 42, "references": ["x"]}', Reason.WRONG_TYPE, "prompt"),
    ('{"prompt": "q", "references": 42}', Reason.WRONG_TYPE, "references"),
    ('{"prompt": "q", "references": {"a": 1}}', Reason.WRONG_TYPE, "references"),
    ('{"prompt": "q", "references": ["ok", 3]}', Reason.WRONG_TYPE, "references"),
    ('{"prompt": "q", "references": [""]}', Reason.EMPTY_FIELD, "references"),
    ('{"prompt": "q", "references": []}', Reason.EMPTY_FIELD, "references"),
    ('{"prompt": "q"}', Reason.MISSING_FIELD, "references"),
    ('{"prompt": "q", "references": ["x"], "task": "translation"}', Reason.UNKNOWN_TASK, "task"),
    ('{"prompt": "q", "references": ["x"], "task": 5}', Reason.WRONG_TYPE, "task"),
    ('{"prompt": "q", "references": ["x"], "context": ["a"]}', Reason.WRONG_TYPE, "context"),
    ('{"prompt": "q", "references": ["x"], "metadata": "m"}', Reason.WRONG_TYPE, "metadata"),
    ('{"prompt": "q\\u0000q", "references": ["x"]}', Reason.CONTROL_CHARACTERS, "prompt"),
    ('{"question": "q", "answer": ["x\\u001b"]}', Reason.CONTROL_CHARACTERS, "answer"),
]


@pytest.mark.parametrize(("line", "reason", "field"), BAD_ROWS)
def test_each_bad_row_is_quarantined_with_its_reason(
    tmp_path: Path, line: str, reason: str, field: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    result = run(path)
    assert result.examples.num_rows == 1
    row = only_quarantined(result)
    assert (row[Col.REASON], row[Col.FIELD]) == (reason, field)
    assert row[Col.SOURCE_ROW] == 2 and row[Col.SOURCE_FILE] == str(path)
    assert row[Col.RAW] == line
    assert row[Col.MESSAGE].startswith(f"{path} row 2")
    if field:
        assert f"field '{field}'" in row[Col.MESSAGE]
    assert result.reasons == {reason: 1}


def test_open_task_needs_no_references(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "o.jsonl", [{"prompt": "Write a haiku.", "task": "open"}])
    assert run(path).examples.column(Col.REFERENCES).to_pylist() == [[]]


def test_invalid_utf8_bytes_quarantine_only_their_row(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(GOOD).encode()
    bad = '{"prompt": "Où?", "references": ["là"]}'.encode("latin-1")
    path.write_bytes(good + b"\n" + bad + b"\n")
    row = only_quarantined(run(path))
    assert row[Col.REASON] == Reason.INVALID_ENCODING
    assert row[Col.FIELD] == "prompt"
    assert "\\xf9" in row[Col.RAW]  # the undecodable byte, shown escaped


def test_over_long_field_is_quarantined(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "long.jsonl", [{**GOOD, "context": "x" * 101}])
    row = only_quarantined(run(path, max_field_chars=100))
    assert (row[Col.REASON], row[Col.FIELD]) == (Reason.FIELD_TOO_LONG, "context")
    assert "101 characters" in row[Col.MESSAGE]


def test_duplicates_within_a_day(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{**GOOD, "id": "q1"}, {**GOOD, "id": "q2"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Other?", "references": ["x"], "id": "q1"}])
    result = run(a, b, dataset_name="same")
    reasons = sorted(r[Col.REASON] for r in result.quarantined.to_pylist())
    assert reasons == [Reason.DUPLICATE_EXAMPLE, Reason.DUPLICATE_ID]
    assert result.examples.num_rows == 1


def test_csv_ragged_rows_header_only_and_empty_files(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("prompt,references\nQ1?,A1\nQ2?,A2,extra\nQ3?\n")
    result = run(ragged)
    assert result.examples.num_rows == 1
    bad = result.quarantined.to_pylist()
    assert [(r[Col.SOURCE_ROW], r[Col.REASON]) for r in bad] == [
        (3, Reason.MALFORMED_ROW),
        (4, Reason.MALFORMED_ROW),
    ]
    assert bad[0][Col.RAW] == "Q2?,A2,extra"

    header_only = tmp_path / "h.csv"
    header_only.write_text("prompt,references\n")
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    result = run(header_only, empty)
    assert result.rows_in == 0 and result.examples.num_rows == 0


def test_blank_jsonl_lines_are_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text("\n" + json.dumps(GOOD) + "\n\n   \n")
    result = run(path)
    assert result.rows_in == 1
    assert result.examples.column(Col.SOURCE_ROW).to_pylist() == [2]


def test_parquet_with_the_wrong_schema_quarantines_every_row(tmp_path: Path) -> None:
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [1, 0]}), path)
    result = run(path)
    assert result.rows_in == 2 and result.examples.num_rows == 0
    assert result.reasons == {Reason.MISSING_FIELD: 2}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.jsonl", "file not found"),
        (lambda p: (p / "folder").mkdir() or p / "folder", "is a directory"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "unknown format"),
        (
            lambda p: (p / "corrupt.parquet").write_bytes(b"PAR1garbage") and p / "corrupt.parquet",
            "cannot read as parquet",
        ),
        (
            lambda p: (p / "arr.json").write_text('[{"prompt": 1},') and p / "arr.json",
            "invalid JSON at line 1",
        ),
    ],
)
def test_unreadable_sources_fail_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DatasetReadError, match=message) as info:
        ingest([path], DAY)
    assert str(path) in str(info.value)


def test_discover_sources_static_and_incoming(tmp_path: Path) -> None:
    static = write_jsonl(tmp_path / "static.jsonl", [GOOD])
    incoming = tmp_path / "incoming"
    dropped = write_jsonl(incoming / DAY.isoformat() / "extra.jsonl", [GOOD])
    (incoming / DAY.isoformat() / ".partial").write_text("ignored")
    other_day = write_jsonl(incoming / "2026-11-21" / "later.jsonl", [GOOD])
    roots = [tmp_path]
    assert discover_sources(static, incoming, DAY, roots) == [static, dropped]
    assert other_day not in discover_sources(None, incoming, DAY, roots)
    with pytest.raises(DatasetReadError, match="no dataset for 2026-11-19"):
        discover_sources(None, incoming, DAY - dt.timedelta(days=1), roots)


def test_symlink_out_of_the_data_roots_is_refused(tmp_path: Path) -> None:
    outside = write_jsonl(tmp_path / "outside" / "secret.jsonl", [GOOD])
    root = tmp_path / "root"
    root.mkdir()
    link = root / "link.jsonl"
    link.symlink_to(outside)
    with pytest.raises(DatasetReadError, match="outside the allowed data roots"):
        check_confined(link, [root])
    assert check_confined(outside, [tmp_path]) == outside.resolve()


def test_shipped_demo_dataset_is_all_valid() -> None:
    result = run(Path(demo_dataset_path()), dataset_name="demo_eval")
    assert result.rows_in >= 150
    assert result.quarantined.num_rows == 0
    tasks = result.examples.column(Col.TASK).to_pylist()
    assert tasks.count("qa") >= 100 and tasks.count("summarization") >= 40
    contexts = result.examples.column(Col.CONTEXT).to_pylist()
    assert all(contexts)
