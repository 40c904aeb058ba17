"""Distributed Delta writes without the Delta jars: every Spark task writes its rows as
one Parquet file into the partition's folder (``mapInArrow``), and only the files'
descriptions (:class:`~llm_eval_pipeline.delta.files.DataFile`, one small row per task)
reach the driver, which commits them in one delta-rs transaction
(:meth:`DeltaStore.commit_files`). The driver's memory does not grow with the rows.

File names carry a token unique to the write and the task's partition and attempt
numbers, so a retried or speculative attempt never overwrites a file another attempt
wrote; only the attempts whose results Spark keeps are committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema

from llm_eval_pipeline.core.schema import TableSpec
from llm_eval_pipeline.delta.files import DATA_FILE_SCHEMA, DataFile, write_data_file


def data_schema(spec: TableSpec) -> pa.Schema:
    """The columns a data file of ``spec`` holds: all but the partition columns."""
    return pa.schema([f for f in spec.schema if f.name not in spec.partition_by])


def _fit(batch: pa.RecordBatch, spec: TableSpec, values: dict[str, str]) -> pa.RecordBatch:
    """``batch`` in the file's schema, after checking every row is in the partition."""
    for column, expected in values.items():
        found = pc.unique(batch.column(column).cast(pa.string())).to_pylist()
        if any(value != expected for value in found):
            raise ValueError(
                f"{spec.name}: rows for {column} in {sorted(map(str, found))} in a write of "
                f"{column}={expected}"
            )
    schema = data_schema(spec)
    table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
    return table.combine_chunks().to_batches()[0]


def write_files(
    frame: DataFrame, spec: TableSpec, table_root: Path, values: dict[str, str]
) -> list[DataFile]:
    """Write ``frame`` (the spec's columns, every row in the partition ``values``, as
    strings) as one file per Spark partition; the written files, not yet committed."""
    token = uuid.uuid4().hex[:12]
    schema, root = data_schema(spec), str(table_root)

    def task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        context = TaskContext.get()
        name = (
            f"part-{context.partitionId():05d}-{token}-a{context.attemptNumber()}.snappy.parquet"
            if context
            else f"part-{token}.snappy.parquet"
        )
        fitted = (_fit(b, spec, values) for b in batches if b.num_rows)
        written = write_data_file(fitted, schema, root, values, name)
        if written is not None:
            yield pa.RecordBatch.from_pylist([written.row()], schema=DATA_FILE_SCHEMA)

    rows = frame.select(*spec.columns).mapInArrow(task, from_arrow_schema(DATA_FILE_SCHEMA))
    return [DataFile.of_row(row.asDict()) for row in rows.collect()]


def remove_files(table_root: Path, files: list[DataFile]) -> None:
    """Delete written files that will not be committed."""
    for file in files:
        (Path(table_root) / file.path).unlink(missing_ok=True)
