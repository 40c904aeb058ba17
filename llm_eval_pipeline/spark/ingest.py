"""Ingestion on the executors, for days whose sources are too large for the driver.

The checks are the driver's (``core.dataset.check_record``), run in Spark tasks:

* a JSON Lines file is read by ``textFile`` and numbered with ``zipWithIndex`` (the line
  number of every row, as the driver counts it; a bare carriage return also ends a line
  here), each line decoded and parsed in the task;
* a Parquet file is read one row group per task with pyarrow (the row numbers follow
  from the row groups' sizes in the footer, which the driver reads);
* CSV, JSON arrays, UTF-16 text and Delta sources are read on the driver as before and
  their records joined to the rest (a JSON array larger than ``JSON_ARRAY_MAX_BYTES`` is
  refused: it is parsed whole; JSON Lines are not).

Duplicates are then found as the driver's ``Validator`` finds them, in source order, by
window functions: the first row of each (dataset, source id) among the rows that passed
their checks keeps it, then the first row of each content id among those. The valid and
the quarantined rows are written by the tasks (``write_spark_partition``); only counts
and a few preview rows reach the driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.pandas.types import from_arrow_schema

from llm_eval_pipeline.core.dataset import (
    DatasetReadError,
    Problem,
    RawRecord,
    check_record,
    dataset_name_for,
    decode_line,
    detect_format,
    duplicate_example,
    duplicate_id,
    parse_json_record,
    problem_message,
    read_records,
    starts_as_utf16,
    table_record,
)
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col

JSON_ARRAY_MAX_BYTES = 256 * 1024 * 1024
"""A JSON array is parsed whole on the driver; larger ones are refused."""
VALID, SOURCE_ID, ALIASES, ORDER = "_valid", "_source_id", "_aliases", "_file_index"

CHECKED_SCHEMA = pa.schema(
    [
        (ORDER, pa.int64()),
        (VALID, pa.bool_()),
        (SOURCE_ID, pa.string()),
        (ALIASES, pa.map_(pa.string(), pa.string())),
        *(
            f
            for f in EVAL_EXAMPLES.schema
            if f.name not in (Col.DATASET, Col.SOURCE_FILE, Col.SOURCE_ROW, Col.EVAL_DATE)
        ),
        *QUARANTINED_EXAMPLES.schema,
    ]
)
"""A checked row: an example's columns when valid, the quarantine's when not."""


def source_bytes(source: Path) -> int:
    """A source's size on disk (a Delta table: its files)."""
    if source.is_dir():
        return sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    return source.stat().st_size


RANGE_BYTES = 32 * 1024 * 1024
"""Bytes of a JSON Lines file one task reads (it ends at the first line break after)."""


def byte_ranges(size: int, step: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``size`` bytes, ``step`` bytes each (at least one)."""
    return [(start, min(start + step, size)) for start in range(0, max(size, 1), step)]


def count_newlines(path: str, start: int, end: int) -> int:
    """Line feeds in bytes ``[start, end)`` of ``path``."""
    count, position = 0, start
    with open(path, "rb") as handle:
        handle.seek(start)
        while position < end:
            chunk = handle.read(min(1 << 20, end - position))
            if not chunk:
                break
            count += chunk.count(b"\n")
            position += len(chunk)
    return count


def lines_starting_in(
    path: str, start: int, end: int, first_number: int
) -> Iterator[tuple[int, bytes]]:
    """The lines (without their line feed) that start in bytes ``[start, end)``, each
    with its 1-based number, given that the line holding byte ``start`` is number
    ``first_number`` (1 + the line feeds before ``start``). Lines are split at line
    feeds only, as ``read_records`` splits them."""
    with open(path, "rb") as handle:
        number = first_number
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":  # inside a line that began in the range before
                handle.readline()
                number += 1
        else:
            handle.seek(0)
        while handle.tell() < end:
            line = handle.readline()
            if not line:
                return
            yield number, line.removesuffix(b"\n")
            number += 1


def _checked(
    record: RawRecord,
    order: int,
    dataset: str,
    day: dt.date,
    max_field_chars: int,
    default_task: str,
) -> dict[str, Any]:
    outcome = check_record(record, dataset, day, max_field_chars, default_task)
    row: dict[str, Any] = {
        ORDER: order,
        Col.DATASET: dataset,
        Col.SOURCE_FILE: record.source_file,
        Col.SOURCE_ROW: record.source_row,
        Col.RAW: record.raw,
        Col.EVAL_DATE: day,
    }
    if isinstance(outcome, Problem):
        return {
            **row,
            VALID: False,
            Col.FIELD: outcome.field,
            Col.REASON: outcome.reason,
            Col.MESSAGE: problem_message(record.source_file, record.source_row, outcome),
        }
    return {
        **outcome.row,
        **row,
        VALID: True,
        SOURCE_ID: outcome.source_id,
        ALIASES: outcome.aliases,
    }


def read_checked(
    session: SparkSession,
    sources: Sequence[Path],
    day: dt.date,
    *,
    dataset_name: str | None,
    max_field_chars: int,
    default_task: str,
) -> DataFrame:
    """Every row of the day's sources, checked row by row in Spark tasks."""
    context = session.sparkContext
    parts = []
    schema = from_arrow_schema(CHECKED_SCHEMA)
    names = CHECKED_SCHEMA.names
    settings = (day, max_field_chars, default_task)

    def as_tuple(row: dict[str, Any]) -> tuple:
        return tuple(row.get(name) for name in names)

    for order, source in enumerate(sources):
        dataset = dataset_name_for(source, dataset_name)
        fmt = detect_format(source)
        path = str(source)
        if fmt == "jsonl" and not starts_as_utf16(source):
            ranges = byte_ranges(source_bytes(source), RANGE_BYTES)
            splits = context.parallelize(ranges, len(ranges))
            counts = splits.map(lambda r, path=path: count_newlines(path, *r)).collect()
            firsts = [1 + sum(counts[:i]) for i in range(len(ranges))]

            def check_lines(items: Iterator, path=path, order=order, dataset=dataset):
                for (start, end), first in items:
                    for number, data in lines_starting_in(path, start, end, first):
                        text = decode_line(data, first=number == 1)
                        if text.strip():
                            record = parse_json_record(path, number, text)
                            yield as_tuple(_checked(record, order, dataset, *settings))

            work = list(zip(ranges, firsts, strict=True))
            parts.append(context.parallelize(work, len(work)).mapPartitions(check_lines))
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                groups = pq.ParquetFile(source).metadata
            except Exception as exc:  # noqa: BLE001 - any reader failure: unusable file
                raise DatasetReadError(f"{source}: cannot read as parquet: {exc}") from exc
            offsets, start = [], 0
            for group in range(groups.num_row_groups):
                offsets.append((group, start))
                start += groups.row_group(group).num_rows

            def check_groups(items: Iterator, path=path, order=order, dataset=dataset):
                import pyarrow.parquet as pq

                file = pq.ParquetFile(path)
                for group, first in items:
                    rows = file.read_row_group(group).to_pylist()
                    for number, row in enumerate(rows, start=first + 1):
                        record = table_record(path, number, row)
                        yield as_tuple(_checked(record, order, dataset, *settings))

            parts.append(
                context.parallelize(offsets, max(1, len(offsets))).mapPartitions(check_groups)
            )
        else:
            if fmt == "json" and source_bytes(source) > JSON_ARRAY_MAX_BYTES:
                raise DatasetReadError(
                    f"{source}: a JSON array of {source_bytes(source):,} bytes is too large to "
                    f"parse on the driver (at most {JSON_ARRAY_MAX_BYTES:,}); write it as JSON "
                    "Lines (one object per line), which Spark reads in parallel"
                )
            rows = [
                as_tuple(_checked(record, order, dataset, *settings))
                for record in read_records(source)
            ]
            parts.append(context.parallelize(rows, 1))
    union = context.union(parts) if parts else context.emptyRDD()
    return session.createDataFrame(union, schema)


def _mark_duplicates(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = batch.to_pylist()
        for row in rows:
            repeated_id, repeated_content = row.pop("_dup_id"), row.pop("_dup_example")
            if not (repeated_id or repeated_content):
                continue
            problem = (
                duplicate_id(row[SOURCE_ID])
                if repeated_id
                else duplicate_example(row[Col.EXAMPLE_ID])
            )
            row[VALID] = False
            row[Col.FIELD], row[Col.REASON] = problem.field, problem.reason
            row[Col.MESSAGE] = problem_message(row[Col.SOURCE_FILE], row[Col.SOURCE_ROW], problem)
        yield pa.RecordBatch.from_pylist(rows, schema=CHECKED_SCHEMA)


def without_duplicates(checked: DataFrame) -> DataFrame:
    """``checked`` with later repeats of a (dataset, source id), then of a content id,
    quarantined, in source order (see the module docstring)."""
    order = [F.col(ORDER), F.col(Col.SOURCE_ROW)]
    by_id = Window.partitionBy(VALID, Col.DATASET, SOURCE_ID).orderBy(*order)
    ranked = checked.withColumn(
        "_dup_id",
        F.coalesce(
            F.col(VALID) & F.col(SOURCE_ID).isNotNull() & (F.row_number().over(by_id) > 1),
            F.lit(False),
        ),
    )
    kept = F.col(VALID) & ~F.col("_dup_id")
    by_content = Window.partitionBy(kept, Col.EXAMPLE_ID).orderBy(*order)
    ranked = ranked.withColumn(
        "_dup_example", F.coalesce(kept & (F.row_number().over(by_content) > 1), F.lit(False))
    )
    return ranked.mapInArrow(_mark_duplicates, checked.schema)


def summary(frame: DataFrame, sources: Sequence[Path]) -> dict[str, Any]:
    """Counts of a checked day (small results only): rows per source, reasons, aliases."""
    per_source = {str(source): 0 for source in sources} | {
        r[Col.SOURCE_FILE]: int(r["count"])
        for r in frame.groupBy(Col.SOURCE_FILE).count().collect()
    }
    reasons = {
        r[Col.REASON]: int(r["count"])
        for r in frame.where(~F.col(VALID)).groupBy(Col.REASON).count().collect()
    }
    aliases = (
        frame.where(F.col(VALID))
        .select(F.explode(ALIASES).alias("alias", "canonical"))
        .distinct()
        .collect()
    )
    return {
        "rows_per_source": per_source,
        "reasons": reasons,
        "aliases_used": {r["alias"]: r["canonical"] for r in aliases},
    }
