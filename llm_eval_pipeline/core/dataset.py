"""Reading evaluation datasets and validating their rows.

A dataset is one or more *sources*: JSON Lines (``.jsonl``/``.ndjson``), a JSON array
(``.json``), CSV (``.csv``, with a header row), Parquet (``.parquet``) or an existing
Delta table (a folder holding ``_delta_log``). Every row read is either normalised into
the ``eval_examples`` schema or quarantined with a reason; nothing is dropped, so
``rows_in == valid + quarantined`` always holds. Blank lines of a text file are not rows.

A source that cannot be read at all (missing, corrupt, a folder that is not a Delta
table, outside the allowed roots) raises :class:`DatasetReadError` naming the file.

``source_row`` is the 1-based line where a record starts for JSONL and CSV (the CSV
header is line 1), and the 1-based row number for JSON arrays, Parquet and Delta.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    FIELD_ALIASES,
    QUARANTINED_EXAMPLES,
    SOURCE_ID_FIELDS,
    SOURCE_ID_KEY,
    TASKS,
    TASKS_NEEDING_REFERENCES,
    Col,
    Reason,
)
from llm_eval_pipeline.core.text import first_invalid_text

TEXT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
BINARY_FORMATS = {".parquet": "parquet", ".pq": "parquet"}

_UNDECODABLE = re.compile("[\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DatasetReadError(UserError):
    """A source cannot be read at all. The message names the file."""


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str
    detail: str


@dataclass
class RawRecord:
    """One row as read from a source, before validation."""

    source_file: str
    source_row: int
    raw: str
    fields: dict[str, Any] | None
    problem: Problem | None = None


@dataclass
class IngestResult:
    """The outcome of ingesting one day: valid rows, quarantined rows and their counts."""

    examples: pa.Table
    quarantined: pa.Table
    rows_in: int
    rows_per_source: dict[str, int]
    reasons: Counter[str]
    aliases_used: dict[str, str] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.examples.num_rows + self.quarantined.num_rows


# ---------------------------------------------------------------- sources


def discover_sources(
    static: Path | None,
    incoming_root: Path | None,
    eval_date: dt.date,
    allowed_roots: Sequence[Path],
) -> list[Path]:
    """The sources for ``eval_date``: the static dataset (applied to every day) and the
    entries of ``incoming_root/<YYYY-MM-DD>/`` (hidden ``.``/``_`` names skipped)."""
    sources: list[Path] = []
    if static is not None:
        sources.append(static)
    if incoming_root is not None:
        day_dir = incoming_root / eval_date.isoformat()
        if day_dir.is_dir():
            sources.extend(
                p for p in sorted(day_dir.iterdir()) if not p.name.startswith((".", "_"))
            )
    if not sources:
        raise DatasetReadError(
            "no dataset for "
            f"{eval_date.isoformat()}: configure a static dataset (`dataset:` in "
            "config.yaml, LLM_EVAL_DATASET, or `llm-eval run --dataset PATH`) or drop files "
            f"into {incoming_root}/{eval_date.isoformat()}/"
        )
    for source in sources:
        check_confined(source, allowed_roots)
    return sources


def check_confined(path: Path, allowed_roots: Sequence[Path]) -> Path:
    """Resolve ``path`` (following symlinks) and insist it lies under an allowed root."""
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in allowed_roots):
        roots = ", ".join(str(r) for r in allowed_roots)
        raise DatasetReadError(
            f"{path}: resolves to {resolved}, outside the allowed data roots ({roots}); "
            "add its folder to data_roots in config.yaml to read it"
        )
    return resolved


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "_delta_log").is_dir():
            return "delta"
        raise DatasetReadError(f"{path}: is a directory, not a dataset file or a Delta table")
    if not path.exists():
        raise DatasetReadError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix in TEXT_FORMATS:
        return TEXT_FORMATS[suffix]
    if suffix in BINARY_FORMATS:
        return BINARY_FORMATS[suffix]
    known = ", ".join(sorted({*TEXT_FORMATS, *BINARY_FORMATS}))
    raise DatasetReadError(f"{path}: unknown format {suffix!r} (expected {known} or Delta)")


def read_records(path: Path) -> Iterator[RawRecord]:
    """Yield every row of one source, parsed where possible."""
    fmt = detect_format(path)
    if fmt in ("jsonl", "json", "csv"):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetReadError(f"{path}: cannot read: {exc}") from exc
        text = _decode(path, data)
        if fmt == "csv":
            yield from _read_csv(path, text)
        elif fmt == "json" and text.lstrip().startswith("["):
            yield from _read_json_array(path, text)
        else:
            yield from _read_jsonl(path, text)
    else:
        yield from _read_table(path, _load_arrow(path, fmt))


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 (BOM optional) or BOM-marked UTF-16. Undecodable UTF-8 bytes are kept as
    surrogate escapes so the rows holding them can be quarantined, not the whole file."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DatasetReadError(
                f"{path}: invalid UTF-16 after its byte-order mark: {exc}"
            ) from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data.decode("utf-8", "surrogateescape")


def _printable(text: str) -> str:
    """Text with undecodable bytes shown as ``\\xNN`` escapes, safe to store."""
    if not _UNDECODABLE.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _encoding_problem(raw: str, fields: dict[str, Any] | None) -> Problem | None:
    if not _UNDECODABLE.search(raw):
        return None
    bad_field = ""
    for key, value in (fields or {}).items():
        if isinstance(value, str) and _UNDECODABLE.search(value):
            bad_field = key
            break
    return Problem(bad_field, Reason.INVALID_ENCODING, "holds bytes that are not valid UTF-8")


def _read_jsonl(path: Path, text: str) -> Iterator[RawRecord]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        yield parse_json_record(str(path), number, line)


def parse_json_record(source: str, number: int, line: str) -> RawRecord:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        problem = Problem("", Reason.UNPARSABLE, f"invalid JSON at column {exc.colno}: {exc.msg}")
        if _UNDECODABLE.search(line):
            problem = _encoding_problem(line, None)
        return RawRecord(source, number, _printable(line), None, problem)
    if not isinstance(value, dict):
        kind = type(value).__name__
        return RawRecord(
            source,
            number,
            _printable(line),
            None,
            Problem("", Reason.NOT_A_RECORD, f"expected a JSON object, got {kind}"),
        )
    return RawRecord(source, number, _printable(line), value, _encoding_problem(line, value))


def _read_json_array(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetReadError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    for number, item in enumerate(items, start=1):
        raw = json.dumps(item, ensure_ascii=False)
        if isinstance(item, dict):
            yield RawRecord(str(path), number, _printable(raw), item, _encoding_problem(raw, item))
        else:
            kind = type(item).__name__
            problem = Problem("", Reason.NOT_A_RECORD, f"expected a JSON object, got {kind}")
            yield RawRecord(str(path), number, _printable(raw), None, problem)


def _read_csv(path: Path, text: str) -> Iterator[RawRecord]:
    lines = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    previous_limit = csv.field_size_limit()
    # Long fields are rejected per row by validation, not by the CSV parser.
    csv.field_size_limit(sys.maxsize)
    try:
        header: list[str] | None = None
        last_line = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DatasetReadError(
                    f"{path}: CSV cannot be parsed after line {last_line}: {exc}"
                ) from exc
            start, last_line = last_line + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            raw = "\n".join(line.removesuffix("\r") for line in lines[start - 1 : last_line])
            if header is None:
                header = [name.strip() for name in row]
                continue
            if len(row) != len(header):
                problem = Problem(
                    "",
                    Reason.MALFORMED_ROW,
                    f"has {len(row)} fields, the header has {len(header)}",
                )
                yield RawRecord(str(path), start, _printable(raw), None, problem)
                continue
            fields = {name: _csv_value(name, cell) for name, cell in zip(header, row, strict=True)}
            yield RawRecord(
                str(path), start, _printable(raw), fields, _encoding_problem(raw, fields)
            )
    finally:
        csv.field_size_limit(previous_limit)


def _csv_value(name: str, cell: str) -> Any:
    """CSV cells are text; an empty cell is missing, and a references or metadata cell
    holding a JSON list or object is parsed as one."""
    if cell == "":
        return None
    list_or_map = name in FIELD_ALIASES[Col.REFERENCES] or name in FIELD_ALIASES[Col.METADATA]
    if list_or_map and cell.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            return cell
    return cell


def _load_arrow(path: Path, fmt: str) -> pa.Table:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        from deltalake import DeltaTable

        return pa.table(DeltaTable(str(path)).to_pyarrow_table())
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DatasetReadError(f"{path}: cannot read as {fmt}: {exc}") from exc


def _read_table(path: Path, table: pa.Table) -> Iterator[RawRecord]:
    for number, row in enumerate(table.to_pylist(), start=1):
        yield table_record(str(path), number, row)


def table_record(source: str, number: int, row: dict[str, Any]) -> RawRecord:
    """Row ``number`` of a Parquet or Delta source, as an Arrow row (``to_pylist``)."""
    fields = {k: _from_arrow(v) for k, v in row.items()}
    raw = json.dumps(fields, ensure_ascii=False, default=str)
    return RawRecord(source, number, raw, fields)


def decode_line(data: bytes, first: bool) -> str:
    """One line of a UTF-8 JSON Lines file as ``read_records`` decodes it (the byte-order
    mark dropped from the first, undecodable bytes kept as surrogate escapes)."""
    if first and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data.decode("utf-8", "surrogateescape").removesuffix("\r")


def starts_as_utf16(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _from_arrow(value: Any) -> Any:
    # Arrow maps arrive as lists of (key, value) tuples.
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return dict(value)
    return value


# ---------------------------------------------------------------- validation


@dataclass
class Validator:
    """Turns raw records into example rows or quarantine rows for one day."""

    eval_date: dt.date
    max_field_chars: int = 50_000
    default_task: str = "qa"
    aliases_used: dict[str, str] = field(default_factory=dict)
    _seen_examples: set[str] = field(default_factory=set)
    _seen_source_ids: set[tuple[str, str]] = field(default_factory=set)

    def validate(self, record: RawRecord, dataset: str) -> dict[str, Any] | Problem:
        """The row for ``record``, or the problem that quarantines it; a row whose
        (dataset, source id) or content came earlier in the day is a duplicate (the id is
        checked first, then the content, as :func:`check_record` leaves them)."""
        checked = check_record(
            record, dataset, self.eval_date, self.max_field_chars, self.default_task
        )
        if isinstance(checked, Problem):
            return checked
        if checked.source_id is not None:
            if (dataset, checked.source_id) in self._seen_source_ids:
                return duplicate_id(checked.source_id)
            self._seen_source_ids.add((dataset, checked.source_id))
        example_id = checked.row[Col.EXAMPLE_ID]
        if example_id in self._seen_examples:
            return duplicate_example(example_id)
        self._seen_examples.add(example_id)
        self.aliases_used.update(checked.aliases)
        return checked.row


@dataclass(frozen=True)
class Checked:
    """A record that passed every per-row check: its row, its source id (if it has one)
    and the field aliases it used (alias -> canonical name)."""

    row: dict[str, Any]
    source_id: str | None
    aliases: dict[str, str]


def duplicate_id(source_id: str) -> Problem:
    return Problem(SOURCE_ID_KEY, Reason.DUPLICATE_ID, f"id {source_id!r} appeared earlier")


def duplicate_example(example_id: str) -> Problem:
    return Problem("", Reason.DUPLICATE_EXAMPLE, f"same content as an earlier row ({example_id})")


def check_record(
    record: RawRecord,
    dataset: str,
    eval_date: dt.date,
    max_field_chars: int,
    default_task: str,
) -> Checked | Problem:
    """Every check of one record that needs no other row: fields, types, lengths,
    characters. Duplicates across rows are the caller's (:class:`Validator` in order on
    the driver, window functions in Spark)."""
    if record.problem is not None:
        return record.problem
    assert record.fields is not None
    invalid = first_invalid_text(record.fields)
    if invalid:
        where, escape = invalid
        return Problem(
            where.strip(),
            Reason.INVALID_ENCODING,
            f"holds {escape}, half of a UTF-16 surrogate pair (text cut inside a "
            "character): not valid Unicode",
        )
    fields = {str(k).strip(): v for k, v in record.fields.items()}
    picked: dict[str, tuple[str, Any]] = {}
    for canonical, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            if fields.get(alias) is not None:
                picked[canonical] = (alias, fields[alias])
                break
    used_names = {alias for alias, _ in picked.values()}

    prompt_name, prompt = picked.get(Col.PROMPT, (Col.PROMPT, None))
    if prompt is None:
        names = "/".join(FIELD_ALIASES[Col.PROMPT])
        return Problem(Col.PROMPT, Reason.MISSING_FIELD, f"no prompt (looked for {names})")
    if not isinstance(prompt, str):
        return _wrong_type(prompt_name, prompt, "a string")
    if not prompt.strip():
        return Problem(prompt_name, Reason.EMPTY_FIELD, "is empty")

    task_name, task = picked.get(Col.TASK, (Col.TASK, default_task))
    if not isinstance(task, str):
        return _wrong_type(task_name, task, "a string")
    task = task.strip().lower()
    if task not in TASKS:
        return Problem(task_name, Reason.UNKNOWN_TASK, f"{task!r} is not one of {TASKS}")

    refs_name, refs = picked.get(Col.REFERENCES, (Col.REFERENCES, None))
    references = _references(refs_name, refs, task)
    if isinstance(references, Problem):
        return references

    context_name, context = picked.get(Col.CONTEXT, (Col.CONTEXT, None))
    if context is not None and not isinstance(context, str):
        return _wrong_type(context_name, context, "a string")
    context = context or None

    meta_name, meta = picked.get(Col.METADATA, (Col.METADATA, None))
    if meta is not None and not isinstance(meta, dict):
        return _wrong_type(meta_name, meta, "an object of strings")
    metadata = {str(k): _as_text(v) for k, v in (meta or {}).items()}

    texts = [(prompt_name, prompt), (context_name, context or "")]
    texts += [(refs_name, r) for r in references]
    for name, text in texts:
        if len(text) > max_field_chars:
            return Problem(
                name,
                Reason.FIELD_TOO_LONG,
                f"has {len(text):,} characters, the limit is {max_field_chars:,}",
            )
        if match := _CONTROL.search(text):
            code = f"U+{ord(match.group()):04X}"
            return Problem(name, Reason.CONTROL_CHARACTERS, f"holds control character {code}")

    source_id = None
    for name in SOURCE_ID_FIELDS:
        if fields.get(name) is not None:
            source_id = _as_text(fields[name])
            used_names.add(name)
            break
    for key, value in fields.items():
        if key not in used_names and value is not None:
            metadata.setdefault(key, _as_text(value))
    if source_id is not None:
        metadata[SOURCE_ID_KEY] = source_id
    example_id = content_id(task, prompt, context, references)
    aliases = {alias: canonical for canonical, (alias, _) in picked.items() if alias != canonical}
    row = {
        Col.EXAMPLE_ID: example_id,
        Col.DATASET: dataset,
        Col.TASK: task,
        Col.PROMPT: prompt,
        Col.REFERENCES: references,
        Col.CONTEXT: context,
        Col.METADATA: metadata,
        Col.SOURCE_FILE: record.source_file,
        Col.SOURCE_ROW: record.source_row,
        Col.EVAL_DATE: eval_date,
    }
    return Checked(row, source_id, aliases)


def _references(name: str, value: Any, task: str) -> list[str] | Problem:
    needed = task in TASKS_NEEDING_REFERENCES
    if value is None:
        if needed:
            names = "/".join(FIELD_ALIASES[Col.REFERENCES])
            return Problem(
                Col.REFERENCES,
                Reason.MISSING_FIELD,
                f"task {task!r} needs references (looked for {names})",
            )
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return _wrong_type(name, value, "a string or a list of strings")
    for item in value:
        if not isinstance(item, str):
            return _wrong_type(name, item, "a string in the list")
        if not item.strip():
            return Problem(name, Reason.EMPTY_FIELD, "holds an empty reference")
    if needed and not value:
        return Problem(name, Reason.EMPTY_FIELD, f"task {task!r} needs at least one reference")
    return list(value)


def _wrong_type(name: str, value: Any, expected: str) -> Problem:
    return Problem(name, Reason.WRONG_TYPE, f"expected {expected}, got {type(value).__name__}")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def content_id(task: str, prompt: str, context: str | None, references: Sequence[str]) -> str:
    """Stable id of an example: the first 16 hex digits of the SHA-256 of its content, so
    the same example keeps its id across days and files."""
    payload = json.dumps(
        [task, prompt, context or "", list(references)], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def dataset_name_for(source: Path, configured: str | None) -> str:
    return configured or source.stem or source.name


def problem_message(source_file: str, source_row: int, problem: Problem) -> str:
    where = f"{source_file} row {source_row}"
    if problem.field:
        where += f" field '{problem.field}'"
    return f"{where}: {problem.detail}"


def ingest(
    sources: Iterable[Path],
    eval_date: dt.date,
    dataset_name: str | None = None,
    max_field_chars: int = 50_000,
    default_task: str = "qa",
) -> IngestResult:
    """Read and validate every source for one day."""
    validator = Validator(eval_date, max_field_chars=max_field_chars, default_task=default_task)
    valid: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    per_source: dict[str, int] = {}
    for source in sources:
        dataset = dataset_name_for(source, dataset_name)
        count = 0
        for record in read_records(source):
            count += 1
            outcome = validator.validate(record, dataset)
            if isinstance(outcome, Problem):
                bad.append(
                    {
                        Col.DATASET: dataset,
                        Col.SOURCE_FILE: record.source_file,
                        Col.SOURCE_ROW: record.source_row,
                        Col.FIELD: outcome.field,
                        Col.REASON: outcome.reason,
                        Col.MESSAGE: problem_message(
                            record.source_file, record.source_row, outcome
                        ),
                        Col.RAW: record.raw,
                        Col.EVAL_DATE: eval_date,
                    }
                )
            else:
                valid.append(outcome)
        per_source[str(source)] = count
    examples = pa.Table.from_pylist(valid, schema=EVAL_EXAMPLES.schema)
    quarantined = pa.Table.from_pylist(bad, schema=QUARANTINED_EXAMPLES.schema)
    return IngestResult(
        examples=examples,
        quarantined=quarantined,
        rows_in=sum(per_source.values()),
        rows_per_source=per_source,
        reasons=Counter(row[Col.REASON] for row in bad),
        aliases_used=dict(validator.aliases_used),
    )
