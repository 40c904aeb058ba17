"""Data files of a Delta table written outside delta-rs's writer, for distributed writes:
each Spark task writes its rows as one Parquet file straight into the partition's folder
and returns a :class:`DataFile`, what the driver needs to commit it as a Delta ``add``
action (path, size, partition values, row count and column statistics, as the Delta
protocol's ``add`` action and per-file statistics define them:
https://github.com/delta-io/delta/blob/master/PROTOCOL.md#add-file-and-remove-file).

Files follow delta-rs's layout: Hive-style folders (``eval_date=2026-11-27/model_id=x``,
values percent-encoded), partition columns not stored in the file. A file no commit
names is invisible to readers; ``optimize``/``vacuum`` of the maintenance job remove it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PartitionValues = Mapping[str, str]


def partition_folder(values: PartitionValues) -> str:
    """The partition's folder under the table root, as delta-rs names it on disk."""
    return "/".join(f"{column}={quote(value, safe='')}" for column, value in values.items())


@dataclass(frozen=True)
class DataFile:
    """One written file, relative to the table root as it is on disk."""

    path: str
    size: int
    rows: int
    stats: str
    partition_values: dict[str, str]
    modification_time: int

    def row(self) -> dict[str, object]:
        """As one row of :data:`DATA_FILE_SCHEMA`."""
        out = asdict(self)
        out["partition_values"] = json.dumps(self.partition_values)
        return out

    @classmethod
    def of_row(cls, row: Mapping[str, object]) -> DataFile:
        values = {**row, "partition_values": json.loads(str(row["partition_values"]))}
        return cls(**values)  # type: ignore[arg-type]


DATA_FILE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("rows", pa.int64()),
        ("stats", pa.string()),
        ("partition_values", pa.string()),
        ("modification_time", pa.int64()),
    ]
)


class _Stats:
    """Row count, null counts and (for numbers and dates) min and max, merged batch by
    batch. Strings get no min/max: a truncated bound would mislead file skipping."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema}
        self.ranged = [
            f.name
            for f in schema
            if pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_date(f.type)
        ]
        self.low: dict[str, object] = {}
        self.high: dict[str, object] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            self.nulls[name] += batch.column(name).null_count
        for name in self.ranged:
            column = batch.column(name)
            if pa.types.is_floating(column.type):
                column = column.filter(pc.invert(pc.is_nan(column)))
            bounds = pc.min_max(column)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if low is None:
                continue
            self.low[name] = low if name not in self.low else min(self.low[name], low)  # type: ignore[type-var]
            self.high[name] = high if name not in self.high else max(self.high[name], high)  # type: ignore[type-var]

    def json(self) -> str:
        def plain(value: object) -> object:
            if hasattr(value, "isoformat"):
                return value.isoformat()  # type: ignore[union-attr]
            if isinstance(value, float) and math.isinf(value):
                return None
            return value

        return json.dumps(
            {
                "numRecords": self.rows,
                "minValues": {k: plain(v) for k, v in self.low.items()},
                "maxValues": {k: plain(v) for k, v in self.high.items()},
                "nullCount": self.nulls,
            }
        )


def write_data_file(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    table_root: str,
    partition_values: PartitionValues,
    name: str,
) -> DataFile | None:
    """Write ``batches`` (already in ``schema``, the table's columns but the partition
    columns) as one Parquet file ``name`` in the partition's folder; None, and no file,
    when there are no rows."""
    folder = partition_folder(partition_values)
    target = Path(table_root) / folder / name
    stats = _Stats(schema)
    writer: pq.ParquetWriter | None = None
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            if writer is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(str(target), schema, compression="snappy")
            writer.write_batch(batch)
            stats.add(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return None
    return DataFile(
        path=f"{folder}/{name}",
        size=target.stat().st_size,
        rows=stats.rows,
        stats=stats.json(),
        partition_values=dict(partition_values),
        modification_time=int(time.time() * 1000),
    )
