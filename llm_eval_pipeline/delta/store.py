"""The Delta store: every pipeline table lives at ``<root>/<table name>``.

Two engines write the same Delta protocol; the configuration picks one:

* ``deltars`` (default): delta-rs (``deltalake``). Needs no JVM jars. A partition is
  replaced by ``write_deltalake(mode="overwrite", predicate=...)``, one atomic commit
  that removes exactly the partition's files and adds the new ones. Writers of other
  partitions may commit at the same time (delta-rs resolves that); a writer that loses a
  race for the same partition, or for the table's creation, tries again, since its write
  replaces the whole partition either way. Reads hand Spark the snapshot's file list, so
  a read stays distributed.
* ``spark``: delta-spark (``format("delta")`` with ``replaceWhere``), for clusters whose
  Spark has the Delta jars.

Both add new columns on write (schema evolution); rows of older partitions read them as
null.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.file_lock import exclusive
from llm_eval_pipeline.core.schema import Col, TableSpec
from llm_eval_pipeline.delta.files import DataFile

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

PartitionValue = str | dt.date
Partition = Mapping[str, PartitionValue]


COMMIT_ATTEMPTS = 8
COMMIT_PARTITION_KEY = "llm_eval.partition"
"""Commit metadata naming the partition a commit replaced (its predicate), on every write."""


BATCH_ROWS = 65_536
"""Rows per batch of :meth:`DeltaStore.batches` and of reads filtered by example id."""

ONE_AT_A_TIME = {"use_threads": False, "batch_readahead": 0, "fragment_readahead": 0}
"""Scanner options that read one batch at a time, in file order: pyarrow reads up to 16
batches and 4 files ahead by default, which for a table with text is hundreds of MB."""


class DeltaStoreError(UserError, RuntimeError):
    """A write or read the store refused, with the table and partition named."""


def partition_predicate(partition: Partition) -> str:
    """SQL predicate matching exactly one partition, e.g. ``eval_date = '2026-11-27'``."""
    parts = []
    for column, value in partition.items():
        quoted = partition_text(value).replace("'", "''")
        parts.append(f"{column} = '{quoted}'")
    return " AND ".join(parts)


def committed_partition(commit: Mapping[str, Any]) -> str | None:
    """The partition predicate one entry of ``DeltaTable.history()`` replaced, or None for
    a commit that replaced none (the table's creation, maintenance). delta-spark's
    ``replaceWhere`` writes record it as the operation's predicate."""
    return commit.get(COMMIT_PARTITION_KEY) or commit.get("operationParameters", {}).get(
        "predicate"
    )


def _commit_properties(partition: Partition) -> Any:
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata={COMMIT_PARTITION_KEY: partition_predicate(partition)})


def partition_text(value: object) -> str:
    """A partition value as the Delta log writes it (dates in ISO form)."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


@dataclass(frozen=True)
class DeltaStore:
    """Reads and writes the pipeline's tables under ``root`` with one engine; the ``spark``
    engine writes through ``spark`` (a SparkSession), unless a write is handed another."""

    root: Path
    engine: str = "deltars"
    spark: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.engine not in ("deltars", "spark"):
            raise DeltaStoreError(f"unknown Delta engine {self.engine!r} (deltars | spark)")

    def path(self, spec: TableSpec) -> Path:
        return Path(self.root) / spec.name

    def exists(self, spec: TableSpec) -> bool:
        return (self.path(spec) / "_delta_log").is_dir()

    def version(self, spec: TableSpec) -> int | None:
        """The table's current version, or None when it does not exist yet."""
        if not self.exists(spec):
            return None
        from deltalake import DeltaTable

        return DeltaTable(str(self.path(spec))).version()

    def partitions(self, spec: TableSpec) -> list[dict[str, str]]:
        """The partitions holding data in the current snapshot, read from the Delta log
        alone (values as strings); none when the table does not exist."""
        if not self.exists(spec):
            return []
        from deltalake import DeltaTable

        return DeltaTable(str(self.path(spec))).partitions()

    # ------------------------------------------------------------ write

    def write_partition(
        self,
        spec: TableSpec,
        data: pa.Table | pd.DataFrame | DataFrame,
        partition: Partition,
        spark: SparkSession | None = None,
    ) -> int:
        """Atomically replace exactly ``partition`` of ``spec`` with ``data``; returns the
        new table version. Every row of ``data`` must belong to ``partition``."""
        self._check_partition(spec, partition)
        if self.engine == "deltars":
            return self._write_deltars(spec, _to_arrow(spec, data), partition)
        spark = spark or self.spark
        if spark is None:
            raise DeltaStoreError("the spark Delta engine needs a SparkSession to write")
        return self._write_spark(spec, data, partition, spark)

    def _check_partition(self, spec: TableSpec, partition: Partition) -> None:
        if tuple(partition) != spec.partition_by:
            raise DeltaStoreError(
                f"{spec.name}: partition {dict(partition)} must name exactly "
                f"{', '.join(spec.partition_by)} in that order"
            )

    def _write_deltars(self, spec: TableSpec, table: pa.Table, partition: Partition) -> int:
        from deltalake import write_deltalake
        from deltalake.exceptions import DeltaError

        for column, value in partition.items():
            expected = partition_text(value)
            values = table.column(column).unique().to_pylist()
            found = {partition_text(v) for v in values} - {expected}
            if found:
                raise DeltaStoreError(
                    f"{spec.name}: rows for {column} in {sorted(found)} in a write of "
                    f"{column}={expected}"
                )
        path = self.path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._create_once(spec)

        def commit() -> None:
            write_deltalake(
                str(path),
                table,
                mode="overwrite",
                partition_by=list(spec.partition_by),
                predicate=partition_predicate(partition),
                schema_mode="merge",
                description=spec.description,
                commit_properties=_commit_properties(partition),
            )

        try:
            return self._commit_retrying(spec, partition, commit)
        except (OSError, DeltaError) as exc:
            # A full disk, a permission or an I/O error: nothing was committed, so the
            # table's current version still holds the previous partition.
            current = self.version(spec)
            state = "not created" if current is None else f"still at version {current}"
            raise DeltaStoreError(
                f"{spec.name}: cannot write {partition_predicate(partition)} to {path}: "
                f"{exc} (the table is {state}; nothing of this write was committed)"
            ) from exc

    def _commit_retrying(
        self, spec: TableSpec, partition: Partition, commit: Callable[[], None]
    ) -> int:
        """Run ``commit`` until it is not beaten by another writer's commit (each attempt
        replaces the whole partition, so trying again is safe); the new version."""
        from deltalake import DeltaTable
        from deltalake.exceptions import CommitFailedError

        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                commit()
                return DeltaTable(str(self.path(spec))).version()
            except CommitFailedError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise DeltaStoreError(
                        f"{spec.name}: {partition_predicate(partition)} not committed after "
                        f"{attempt} attempts, other writers kept committing first: {exc}"
                    ) from exc
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")

    def commit_files(self, spec: TableSpec, files: Sequence[DataFile], partition: Partition) -> int:
        """Replace exactly ``partition`` of ``spec`` with ``files`` (already written in
        its folder, see :mod:`llm_eval_pipeline.delta.files`) in one delta-rs commit that
        adds them and removes the partition's previous files; returns the new version. A
        commit that loses a race tries again, as :meth:`write_partition` does."""
        from deltalake import DeltaTable
        from deltalake.transaction import AddAction

        self._check_partition(spec, partition)
        expected = {column: partition_text(value) for column, value in partition.items()}
        for file in files:
            if file.partition_values != expected:
                raise DeltaStoreError(
                    f"{spec.name}: file {file.path} holds {file.partition_values}, not the "
                    f"partition {expected} being committed"
                )
        self._create_once(spec)
        actions = [
            AddAction(
                file.path,
                file.size,
                file.partition_values,
                file.modification_time,
                True,
                file.stats,
            )  # fmt: skip
            for file in files
        ]
        filters = [(column, "=", value) for column, value in expected.items()]
        path = str(self.path(spec))

        def commit() -> None:
            DeltaTable(path).create_write_transaction(
                actions, "overwrite", spec.schema, list(spec.partition_by), filters,
                commit_properties=_commit_properties(partition),
            )  # fmt: skip

        return self._commit_retrying(spec, partition, commit)

    def _create_once(self, spec: TableSpec) -> None:
        """Create the table, empty, if it does not exist: one process at a time. Two
        writers that both found no table and both created it by writing could each commit
        their rows as a blind add (the second one's overwrite had nothing to remove), and a
        partition held both sets (seen here in 12 of 15 races of two processes); an
        overwrite of an existing table conflicts and retries instead."""
        from deltalake import DeltaTable

        if self.exists(spec):
            return
        path = self.path(spec)
        with exclusive(path.parent / f".{spec.name}.create.lock"):
            if not self.exists(spec):
                DeltaTable.create(
                    str(path),
                    spec.schema,
                    mode="ignore",
                    partition_by=list(spec.partition_by),
                    name=spec.name,
                    description=spec.description,
                )

    def _write_spark(
        self, spec: TableSpec, data: Any, partition: Partition, spark: SparkSession
    ) -> int:
        from pyspark.sql import DataFrame as SparkDataFrame

        frame = data
        if not isinstance(data, SparkDataFrame):
            frame = spark.createDataFrame(_to_arrow(spec, data).to_pandas())
        try:
            (
                frame.write.format("delta")
                .mode("overwrite")
                .option("replaceWhere", partition_predicate(partition))
                .option("mergeSchema", "true")
                .partitionBy(*spec.partition_by)
                .save(str(self.path(spec)))
            )
        except Exception as exc:
            if "DATA_SOURCE_NOT_FOUND" not in str(exc):
                raise
            raise DeltaStoreError(
                f"{spec.name}: delta_engine spark needs the Delta jars on Spark's classpath "
                "(Databricks, or spark.jars.packages io.delta:delta-spark where Maven is "
                "reachable); use delta_engine deltars otherwise"
            ) from exc
        version = self.version(spec)
        assert version is not None
        return version

    # ------------------------------------------------------------ read

    def read(
        self,
        spark: SparkSession,
        spec: TableSpec,
        partition: Partition | None = None,
    ) -> DataFrame:
        """A Spark DataFrame of the table's current snapshot, optionally one partition.

        A table that does not exist yet reads as empty, with the spec's schema."""
        from pyspark.sql.pandas.types import from_arrow_schema

        where = partition_predicate(partition) if partition else None
        if not self.exists(spec):
            return spark.createDataFrame([], from_arrow_schema(spec.schema))
        if self.engine == "spark":
            frame = spark.read.format("delta").load(str(self.path(spec)))
        else:
            from deltalake import DeltaTable

            table = DeltaTable(str(self.path(spec)))
            schema = from_arrow_schema(_plain_arrow_schema(table.schema().to_arrow()))
            files = table.file_uris(file_pruning_predicate=where) if where else table.file_uris()
            frame = (
                spark.read.schema(schema).option("basePath", str(self.path(spec))).parquet(*files)
                if files
                else spark.createDataFrame([], schema)
            )
        frame = frame.where(where) if where else frame
        return _with_spec_columns(frame, spec)

    def file_rows(self, spec: TableSpec) -> pa.Table:
        """One row per data file of the table's current snapshot: its partition values
        and its row count (``FILE_ROWS``, null where the file has no statistics), read
        from the Delta log, not from the data."""
        from deltalake import DeltaTable

        actions = pa.table(DeltaTable(str(self.path(spec))).get_add_actions(flatten=True))
        columns = {c: actions.column(f"partition.{c}") for c in spec.partition_by}
        return pa.table({**columns, FILE_ROWS: actions.column(FILE_ROWS)})

    def read_arrow(
        self,
        spec: TableSpec,
        partition: Partition | None = None,
        columns: list[str] | None = None,
        before: PartitionValue | None = None,
        ids: Sequence[str] | None = None,
    ) -> pa.Table:
        """The table (or one partition; or, with ``before``, the days before it; or the
        rows of the example ``ids``) read in this process with delta-rs, for small reads
        such as previews and checks."""
        if not self.exists(spec):
            empty = spec.schema.empty_table()
            return empty.select(columns) if columns else empty
        from deltalake import DeltaTable

        table = DeltaTable(str(self.path(spec)))
        filters = [(c, "=", v) for c, v in partition.items()] if partition else []
        if before is not None:
            filters.append((spec.partition_by[0], "<", before))
        if ids is None:
            return pa.table(table.to_pyarrow_table(columns=columns, filters=filters or None))
        # Batch by batch, filtered here: memory stays at a batch however large the
        # partition, and an ``in`` filter pushed to delta-rs drops the files written by
        # Spark tasks (they carry no string bounds in their statistics).
        import pyarrow.compute as pc

        if before is not None or set(partition or {}) != set(spec.partition_by):
            raise ValueError(f"{spec.name}: rows by id are read from one whole partition")
        wanted = pa.array(sorted(set(ids)), pa.string())
        names = list(columns or spec.columns)
        read = [c for c in dict.fromkeys([*names, Col.EXAMPLE_ID]) if c not in spec.partition_by]
        kept = [
            pa.Table.from_batches([batch]).filter(
                pc.is_in(batch.column(Col.EXAMPLE_ID), value_set=wanted)
            )
            for batch in self.batches(spec, partition, read)
        ]
        found = pa.concat_tables(kept) if kept else spec.schema.empty_table().select(read)
        for column in spec.partition_by:  # the partition's own values, as a column
            if column in names:
                value = pa.scalar(partition[column], spec.schema.field(column).type)
                found = found.append_column(column, pa.array([value] * found.num_rows, value.type))
        return found.select(names)

    def batches(
        self,
        spec: TableSpec,
        partition: Partition,
        columns: Sequence[str],
        rows: int = BATCH_ROWS,
        before: PartitionValue | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``partition`` (or, with ``before``, of the days before it) a batch
        at a time, those of ``columns`` the table has (not its partition columns), in the
        table's file order, the same on every read of one version: the memory of a batch,
        however large the table.

        A partition's files are read by pyarrow straight from this folder, as the Delta
        log lists them: through delta-rs's Python file system every scan of a large
        partition left a hundred MB or more of the driver's heap behind."""
        if not self.exists(spec):
            return iter(())
        import pyarrow.dataset as ds
        from deltalake import DeltaTable

        table = DeltaTable(str(self.path(spec)))
        schema = _plain_arrow_schema(table.schema().to_arrow())
        data = pa.schema([f for f in schema if f.name not in spec.partition_by])
        present = [c for c in columns if c in data.names]
        if before is None:
            where = partition_predicate(partition) if partition else None
            files = table.file_uris(file_pruning_predicate=where) if where else table.file_uris()
            dataset = ds.dataset(files, schema=data, format="parquet")
            scanner = dataset.scanner(columns=present, batch_size=rows, **ONE_AT_A_TIME)
            return scanner.to_batches()
        from pyarrow.parquet import filters_to_expression

        filters = [(c, "=", v) for c, v in partition.items()]
        filters.append((spec.partition_by[0], "<", before))
        scanner = table.to_pyarrow_dataset().scanner(
            columns=present, filter=filters_to_expression(filters), batch_size=rows,
            **ONE_AT_A_TIME,
        )  # fmt: skip
        return scanner.to_batches()


FILE_ROWS = "num_records"
"""The row count of a data file in the Delta log's add actions (delta-rs's name)."""


def _with_spec_columns(frame: DataFrame, spec: TableSpec) -> DataFrame:
    """``frame`` with the columns added to ``spec`` since the table was written, as nulls."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    for column in spec.schema:
        if column.name not in frame.columns:
            frame = frame.withColumn(column.name, F.lit(None).cast(from_arrow_type(column.type)))
    return frame


def _plain_arrow_schema(schema: Any) -> pa.Schema:
    """delta-rs hands out string views and large types; Spark wants the plain ones."""
    plain = pa.schema(schema)
    fields = [f.with_type(_plain_type(f.type)) for f in plain]
    return pa.schema(fields)


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_plain_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(_plain_type(t.key_type), _plain_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain_type(f.type)) for f in t])
    return t


def _to_arrow(spec: TableSpec, data: Any) -> pa.Table:
    """Bring pandas, Arrow or Spark data to the spec's schema, extra columns kept."""
    names = list(data.column_names if isinstance(data, pa.Table) else data.columns)
    missing = [name for name in spec.columns if name not in names]
    if missing:
        raise DeltaStoreError(f"{spec.name}: data lacks columns {missing}")
    extra = [name for name in names if name not in spec.columns]
    try:
        if isinstance(data, pa.Table):
            table = data
        elif hasattr(data, "toArrow"):
            table = data.toArrow()
        else:
            # pandas cannot tell a map from a list of pairs: the spec's schema says which.
            table = pa.Table.from_pandas(
                data[spec.columns], schema=spec.schema, preserve_index=False
            )
            for name in extra:
                table = table.append_column(name, pa.array(data[name]))
        ordered = table.select([*spec.columns, *extra])
        target = pa.schema([*spec.schema, *(ordered.schema.field(n) for n in extra)])
        return ordered.cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise DeltaStoreError(f"{spec.name}: data does not fit the table schema: {exc}") from exc
