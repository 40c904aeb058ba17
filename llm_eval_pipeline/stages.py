"""The pipeline's stages as plain functions: ingest a day, generate a day×model, score it,
aggregate it, log it to MLflow.

Each Dagster asset (``defs/assets``) is a thin wrapper that calls one of these and turns
its result into metadata and checks; ``benchmarks/chain.py`` calls the same functions to
time the chain without Dagster. Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import functools
import gc
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llm_eval_pipeline.core import drift, slices
from llm_eval_pipeline.core.aggregate import (
    Batches,
    aggregate_partition,
    out_of_range,
    row_keys,
)
from llm_eval_pipeline.core.cost import Prices
from llm_eval_pipeline.core.dataset import discover_sources, ingest
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.models import ModelSpec
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    EVAL_EXAMPLES,
    EXAMPLE_METRICS,
    GENERATIONS,
    GEOMETRIC_METRICS,
    INPUT_DRIFT,
    LOWER_IS_BETTER,
    METRIC_AGGREGATES,
    METRIC_CONFIG_HASH,
    METRIC_NOTES,
    METRIC_SLICES,
    QUARANTINED_EXAMPLES,
    Agg,
    Col,
    Drift,
    TableSpec,
)
from llm_eval_pipeline.delta.store import DeltaStore, partition_text
from llm_eval_pipeline.tracking.dashboard_data import (
    DIRECTED_METRICS,
    REFERENCE,
    worst_candidates,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from llm_eval_pipeline.spark.udfs import TaskStats
    from llm_eval_pipeline.tracking.mlflow_runs import LoggedRun

FIRST_ERRORS = 5
_Stage = TypeVar("_Stage", bound=Callable[..., Any])


class StageError(UserError):
    """A stage that cannot complete, its message naming the partition and the cause."""

    def __init__(self, message: str, metadata: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.metadata = dict(metadata or {})


def _partition(day: dt.date, model_id: str) -> dict[str, object]:
    return {Col.EVAL_DATE: day, Col.MODEL_ID: model_id}


def release_memory() -> None:
    """Hand back to the system what Arrow's memory pool and the C heap hold but no longer
    use. Both keep freed memory for reuse, so without this a long run (``llm-eval run``
    executes every stage in one process) starts each stage from the peak of the ones
    before it."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _releasing(stage: _Stage) -> _Stage:
    """``stage``, then :func:`release_memory`, however it ends."""

    @functools.wraps(stage)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return stage(*args, **kwargs)
        finally:
            release_memory()

    return run  # type: ignore[return-value]


# ---------------------------------------------------------------- ingest


@dataclass(frozen=True)
class IngestedDay:
    """A day's ingestion: what was read (rows per source, quarantine reasons, field
    aliases used, a few rows of each table) and the counts read back from Delta."""

    rows_in: int
    rows_per_source: dict[str, int]
    reasons: dict[str, int]
    aliases_used: dict[str, str]
    examples_preview: pa.Table
    quarantine_preview: pa.Table
    examples_version: int
    quarantine_version: int
    stored_valid: int
    stored_quarantined: int
    on_executors: bool

    @property
    def balanced(self) -> bool:
        """Rows read = rows stored as examples + rows stored in quarantine."""
        return self.rows_in == self.stored_valid + self.stored_quarantined


@_releasing
def ingest_day(
    store: DeltaStore,
    session: SparkSession,
    day: dt.date,
    *,
    static_path: Path | None,
    incoming: Path,
    allowed_roots: Sequence[Path],
    dataset_name: str | None,
    max_field_chars: int,
    default_task: str,
    spark_ingest_min_bytes: int | None = None,
) -> IngestedDay:
    """Read and validate the day's sources, replace the day's partitions of
    ``eval_examples`` and ``quarantined_examples``, and count both back from Delta.

    Days whose sources hold ``spark_ingest_min_bytes`` or more are read, checked and
    written by Spark tasks (``spark/ingest.py``); smaller ones on the driver, which is
    faster for them (no job to start); None keeps every day on the driver."""
    from llm_eval_pipeline.spark.ingest import source_bytes

    sources = discover_sources(static_path, incoming, day, list(allowed_roots))
    partition = {Col.EVAL_DATE: day}
    size = sum(source_bytes(source) for source in sources)
    if spark_ingest_min_bytes is not None and size >= spark_ingest_min_bytes:
        return _ingest_on_executors(
            store, session, day, sources, dataset_name=dataset_name,
            max_field_chars=max_field_chars, default_task=default_task,
        )  # fmt: skip
    result = ingest(
        sources,
        day,
        dataset_name=dataset_name,
        max_field_chars=max_field_chars,
        default_task=default_task,
    )
    examples_version = store.write_partition(EVAL_EXAMPLES, result.examples, partition)
    quarantine_version = store.write_partition(QUARANTINED_EXAMPLES, result.quarantined, partition)
    return IngestedDay(
        rows_in=result.rows_in,
        rows_per_source=result.rows_per_source,
        reasons=dict(result.reasons),
        aliases_used=result.aliases_used,
        examples_preview=result.examples.slice(0, SAMPLE_ROWS),
        quarantine_preview=result.quarantined.slice(0, SAMPLE_ROWS),
        examples_version=examples_version,
        quarantine_version=quarantine_version,
        stored_valid=store.read(session, EVAL_EXAMPLES, partition).count(),
        stored_quarantined=store.read(session, QUARANTINED_EXAMPLES, partition).count(),
        on_executors=False,
    )


def _ingest_on_executors(
    store: DeltaStore,
    session: SparkSession,
    day: dt.date,
    sources: Sequence[Path],
    **options: Any,
) -> IngestedDay:
    from pyspark.sql import functions as F  # noqa: N812

    from llm_eval_pipeline.spark.ingest import VALID, read_checked, summary, without_duplicates

    partition = {Col.EVAL_DATE: day}
    checked = without_duplicates(read_checked(session, sources, day, **options)).persist()
    try:
        rows_in = checked.count()
        valid = checked.where(F.col(VALID)).select(*EVAL_EXAMPLES.columns)
        bad = checked.where(~F.col(VALID)).select(*QUARANTINED_EXAMPLES.columns)
        examples_version = write_spark_partition(store, session, EVAL_EXAMPLES, valid, partition)
        quarantine_version = write_spark_partition(
            store, session, QUARANTINED_EXAMPLES, bad, partition
        )
        counts = summary(checked, sources)
    finally:
        checked.unpersist()
    stored_examples = store.read(session, EVAL_EXAMPLES, partition)
    stored_quarantine = store.read(session, QUARANTINED_EXAMPLES, partition)
    return IngestedDay(
        rows_in=rows_in,
        rows_per_source=counts["rows_per_source"],
        reasons=counts["reasons"],
        aliases_used=counts["aliases_used"],
        examples_preview=_arrow(
            stored_examples.orderBy(Col.SOURCE_FILE, Col.SOURCE_ROW).limit(SAMPLE_ROWS),
            EVAL_EXAMPLES,
        ),
        quarantine_preview=_arrow(
            stored_quarantine.orderBy(Col.SOURCE_FILE, Col.SOURCE_ROW).limit(SAMPLE_ROWS),
            QUARANTINED_EXAMPLES,
        ),
        examples_version=examples_version,
        quarantine_version=quarantine_version,
        stored_valid=stored_examples.count(),
        stored_quarantined=stored_quarantine.count(),
        on_executors=True,
    )


# ---------------------------------------------------------------- generate


@dataclass(frozen=True)
class GeneratedPartition:
    """What was generated and committed, summarised by Spark: the rows stay in Delta."""

    rows: int
    errors: int
    output_tokens: int
    sample: pa.Table
    version: int
    stats: TaskStats
    seconds: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.rows if self.rows else 0.0


def write_spark_partition(
    store: DeltaStore,
    session: SparkSession,
    spec: TableSpec,
    frame: DataFrame,
    partition: Mapping[str, object],
    check: Callable[[DataFrame, int, Mapping[str, int]], None] | None = None,
) -> int:
    """Replace ``partition`` of ``spec`` with a Spark DataFrame, the rows never passing
    through the driver; returns the new version. ``check(written, rows, null_counts)``
    runs after the rows are written and before they are committed (``written`` reads
    them back); raising there commits nothing.

    With delta-rs the tasks write the files and the driver commits them
    (``spark/delta_writer.py``); with delta-spark the frame is cached, checked and
    written by ``format("delta")``."""
    from pyspark.sql import functions as F  # noqa: N812

    from llm_eval_pipeline.spark.delta_writer import remove_files, write_files

    values = {column: partition_text(value) for column, value in partition.items()}
    key = [Col.EXAMPLE_ID] if Col.EXAMPLE_ID in spec.columns else [Col.SOURCE_FILE, Col.SOURCE_ROW]
    ordered = frame.sortWithinPartitions(*key)
    if store.engine != "deltars":
        ordered = ordered.persist()
        try:
            if check is not None:
                nulls = ordered.select(
                    *(F.count(F.when(F.col(c).isNull(), 1)).alias(c) for c in spec.columns)
                ).first()
                check(ordered, ordered.count(), nulls.asDict() if nulls else {})
            return store.write_partition(spec, ordered, partition, spark=session)
        finally:
            ordered.unpersist()
    root = store.path(spec)
    files = write_files(ordered, spec, root, values)
    try:
        if check is not None:
            nulls: dict[str, int] = {}
            for file in files:
                for column, count in json.loads(file.stats)["nullCount"].items():
                    nulls[column] = nulls.get(column, 0) + int(count)
            written = (
                session.read.option("basePath", str(root)).parquet(
                    *(str(root / file.path) for file in files)
                )
                if files
                else frame.limit(0)
            )
            check(written, sum(file.rows for file in files), nulls)
        return store.commit_files(spec, files, partition)
    except BaseException:
        remove_files(root, files)
        raise


def generate_partition(
    store: DeltaStore,
    session: SparkSession,
    spec: ModelSpec,
    day: dt.date,
    *,
    max_error_rate: float,
    partitions: int | None = None,
) -> GeneratedPartition:
    """Generate the model's output for every example of the day (a Spark UDF) and replace
    the day×model partition of ``generations``; more failed rows than ``max_error_rate``
    raise :class:`StageError` and commit nothing."""
    from pyspark.sql import functions as F  # noqa: N812

    from llm_eval_pipeline.spark.udfs import TaskStats, generate_outputs

    examples = store.read(session, EVAL_EXAMPLES, {Col.EVAL_DATE: day})
    frame, events = generate_outputs(examples, spec, partitions)

    def check(written: DataFrame, rows: int, nulls: Mapping[str, int]) -> None:
        errors = rows - int(nulls.get(Col.ERROR, rows))
        error_rate = errors / rows if rows else 0.0
        if error_rate > max_error_rate:
            failed = written.where(F.col(Col.ERROR).isNotNull()).select(Col.EXAMPLE_ID, Col.ERROR)
            first = "\n".join(
                f"- {r[Col.EXAMPLE_ID]}: {r[Col.ERROR]}"
                for r in failed.orderBy(Col.EXAMPLE_ID).limit(FIRST_ERRORS).collect()
            )
            raise StageError(
                f"{spec.name} on {day}: {errors} of {rows} rows failed "
                f"(error rate {error_rate:.0%} > max_error_rate {max_error_rate:.0%}); "
                f"first errors:\n{first}",
                {"rows": rows, "errors": errors},
            )

    partition = _partition(day, spec.name)
    started = time.perf_counter()
    version = write_spark_partition(store, session, GENERATIONS, frame, partition, check)
    seconds = time.perf_counter() - started
    stored = store.read(session, GENERATIONS, partition)
    totals = stored.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(Col.ERROR).alias("errors"),
        F.sum(Col.OUTPUT_TOKENS).alias("tokens"),
    ).first()
    failed_first = stored.where(F.col(Col.ERROR).isNotNull()).orderBy(Col.EXAMPLE_ID)
    rest = stored.where(F.col(Col.ERROR).isNull()).orderBy(Col.EXAMPLE_ID)
    sample = pa.concat_tables(
        [
            _arrow(failed_first.limit(SAMPLE_ROWS), GENERATIONS),
            _arrow(rest.limit(SAMPLE_ROWS), GENERATIONS),
        ]
    ).slice(0, SAMPLE_ROWS)
    return GeneratedPartition(
        rows=int(totals["rows"]),
        errors=int(totals["errors"]),
        output_tokens=int(totals["tokens"] or 0),
        sample=sample,
        version=version,
        stats=TaskStats(events.value),
        seconds=seconds,
    )


SAMPLE_ROWS = 10
"""Rows of a partition the asset's metadata previews."""


def _arrow(frame: DataFrame, spec: TableSpec) -> pa.Table:
    """A small Spark result in the spec's schema."""
    table = frame.select(*spec.columns).toArrow()
    return table.cast(spec.schema) if len(table) else spec.schema.empty_table()


# ---------------------------------------------------------------- score


def scoring_input(
    store: DeltaStore, session: SparkSession, day: dt.date, model_id: str
) -> DataFrame:
    """One day×model's generations joined with their examples: what ``score_outputs``
    scores."""
    generated = store.read(session, GENERATIONS, _partition(day, model_id)).select(
        Col.EXAMPLE_ID,
        Col.OUTPUT,
        Col.OUTPUT_LOGPROB,
        Col.OUTPUT_LOGPROB_TOKENS,
        Col.GENERATION_CONFIG_HASH,
        Col.EVAL_DATE,
        Col.MODEL_ID,
    )
    examples = store.read(session, EVAL_EXAMPLES, {Col.EVAL_DATE: day}).select(
        Col.EXAMPLE_ID, Col.PROMPT, Col.CONTEXT, Col.REFERENCES
    )
    return generated.join(examples, on=Col.EXAMPLE_ID, how="inner")


@dataclass(frozen=True)
class ScoredPartition:
    """What was scored and committed, summarised by Spark: per metric, its mean over the
    rows that have it and how many rows lack it; why metrics are null, counted."""

    rows: int
    means: dict[str, float]
    nulls: dict[str, int]
    null_reasons: dict[str, int]
    version: int
    stats: TaskStats
    seconds: float


def score_partition(
    store: DeltaStore,
    session: SparkSession,
    spec: ModelSpec,
    config: MetricConfig,
    day: dt.date,
    *,
    partitions: int | None = None,
) -> ScoredPartition:
    """Score every output of the day×model (``score_batch`` in a Spark UDF) and replace
    its partition of ``example_metrics``."""
    from pyspark.sql import functions as F  # noqa: N812

    from llm_eval_pipeline.spark.udfs import TaskStats, score_outputs

    joined = scoring_input(store, session, day, spec.name)
    frame, events = score_outputs(joined, spec, config, partitions)
    partition = _partition(day, spec.name)
    started = time.perf_counter()
    version = write_spark_partition(store, session, EXAMPLE_METRICS, frame, partition)
    seconds = time.perf_counter() - started
    stored = store.read(session, EXAMPLE_METRICS, partition)
    present = {name: F.when(~F.isnan(F.col(name)), F.col(name)) for name in ALL_METRIC_COLUMNS}
    totals = stored.agg(
        F.count(F.lit(1)).alias("__rows"),
        *(F.avg(value).alias(f"mean_{name}") for name, value in present.items()),
        *(F.count(value).alias(f"count_{name}") for name, value in present.items()),
    ).first()
    rows = int(totals["__rows"]) if totals else 0
    reasons = (
        stored.select(F.explode(METRIC_NOTES).alias("group", "reason"))
        .groupBy("group", "reason")
        .count()
        .collect()
    )
    return ScoredPartition(
        rows=rows,
        means={
            name: float(totals[f"mean_{name}"])
            for name in ALL_METRIC_COLUMNS
            if totals is not None and totals[f"mean_{name}"] is not None
        },
        nulls={
            name: rows - int(totals[f"count_{name}"])
            for name in ALL_METRIC_COLUMNS
            if totals is not None
        },
        null_reasons={f"{r['group']}: {r['reason']}": int(r["count"]) for r in reasons},
        version=version,
        stats=TaskStats(events.value),
        seconds=seconds,
    )


# ---------------------------------------------------------------- aggregate


def valued_columns(
    store: DeltaStore, spec: TableSpec, partition: Mapping[str, object], names: Sequence[str]
) -> list[str]:
    """Those of ``names`` (float columns) with a value in some row of the partition, found
    a batch at a time: the metric groups not computed are NaN in every row, and reading
    them would cost 8 bytes a row each."""
    found: set[str] = set()
    for batch in store.batches(spec, dict(partition), names):
        for name in batch.schema.names:
            if name not in found and pc.any(pc.invert(pc.is_nan(batch.column(name)))).as_py():
                found.add(name)
        if len(found) == len(names):
            break
    return [n for n in names if n in found]


def example_metrics_frame(
    store: DeltaStore, day: dt.date, model_id: str, names: Sequence[str]
) -> pd.DataFrame:
    """A day×model's ids and metric columns ``names`` (:func:`ranking_columns`) as pandas
    with the day and the model, for ranking: the ids stay Arrow strings (a million as
    Python objects would cost about 100 MB)."""
    columns = [Col.EXAMPLE_ID, *names]
    frame = store.read_arrow(EXAMPLE_METRICS, _partition(day, model_id), columns).to_pandas(
        types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get
    )
    one = np.zeros(len(frame), dtype="int8")  # a byte a row, not an object reference
    return frame.assign(**{
        Col.EVAL_DATE: pd.Categorical.from_codes(one, [day]),
        Col.MODEL_ID: pd.Categorical.from_codes(one, [model_id]),
    })  # fmt: skip


def ranking_columns(store: DeltaStore, day: dt.date, model_id: str, compared: bool) -> list[str]:
    """The metric columns the dashboard reads of a day×model to rank its examples: the
    ranking metric alone (``tracking.dashboard_data.ranking_metric``), or, when the day
    has other models to count wins against, every metric with a direction."""
    partition = _partition(day, model_id)
    directed = valued_columns(store, EXAMPLE_METRICS, partition, DIRECTED_METRICS)
    return directed if compared else directed[:1]


def ranking_rows(store: DeltaStore, day: dt.date, model_id: str, n: int) -> pd.DataFrame:
    """What ranking a day×model's ``n`` worst examples needs when no other model is
    compared with it: the example id and the ranking metric of the rows that can be
    among them (``tracking.dashboard_data.worst_candidates`` of each batch), with the day
    and the model. Read a batch at a time: no column of the whole partition is held."""
    by = ranking_columns(store, day, model_id, compared=False)
    parts = []
    for batch in store.batches(EXAMPLE_METRICS, _partition(day, model_id), [Col.EXAMPLE_ID, *by]):
        frame = batch.to_pandas()
        parts.append(frame.iloc[worst_candidates(frame, by[0] if by else None, n)])
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[Col.EXAMPLE_ID])
    return rows.assign(**{Col.EVAL_DATE: day, Col.MODEL_ID: model_id})


def _batches(
    store: DeltaStore,
    spec: TableSpec,
    partition: Mapping[str, object],
    only: Sequence[str] | None = None,
) -> Batches:
    """A partition as :data:`Batches` (of its columns in ``only``, when given)."""
    return lambda columns: (
        batch.to_pandas()
        for batch in store.batches(
            spec, dict(partition), [c for c in columns if only is None or c in only]
        )
    )


@dataclass(frozen=True)
class AggregatedPartition:
    table: pd.DataFrame
    version: int
    out_of_range: dict[str, int]
    config_hashes: list[str] = field(default_factory=list)

    @property
    def means(self) -> dict[str, float]:
        return {
            str(row[Agg.METRIC]): float(row[Agg.MEAN])
            for _, row in self.table.iterrows()
            if pd.notna(row[Agg.MEAN])
        }

    @property
    def rows(self) -> int:
        """The partition's generations (failed ones too)."""
        return int(self.table[Agg.ROWS].iloc[0]) if len(self.table) else 0


class NothingToAggregate(StageError):
    """The day×model has no scored examples yet."""


@_releasing
def aggregate_day_model(
    store: DeltaStore,
    day: dt.date,
    model_id: str,
    *,
    resamples: int,
    seed: int,
    prices: Prices | None = None,
    judge_prices: Prices | None = None,
) -> AggregatedPartition:
    """Aggregate the day×model's metrics (``core.aggregate``; costs at ``prices`` and
    ``judge_prices``), read a batch at a time, with the Delta versions it read, and
    replace its partition of ``metric_aggregates``."""
    partition = _partition(day, model_id)
    # the metric groups not computed are left unread
    valued = valued_columns(store, EXAMPLE_METRICS, partition, ALL_METRIC_COLUMNS)
    scored = _batches(store, EXAMPLE_METRICS, partition, [Col.EXAMPLE_ID, *valued])
    hashes: set[str] = set()  # every scored row carries its config's hash
    bad: dict[str, int] = {}
    for batch in _batches(store, EXAMPLE_METRICS, partition)([METRIC_CONFIG_HASH, *valued]):
        hashes |= set(batch[METRIC_CONFIG_HASH].dropna())
        for name, count in out_of_range(batch).items():
            bad[name] = bad.get(name, 0) + count
    if not hashes:
        raise NothingToAggregate(
            f"no example_metrics for {model_id} on {day}: materialize generations and "
            "example_metrics for this partition first"
        )
    config_hashes = sorted(hashes)
    generated = _batches(store, GENERATIONS, partition)
    table = aggregate_partition(scored, generated, resamples, seed, prices, judge_prices)
    table[METRIC_CONFIG_HASH] = ",".join(config_hashes)
    table[Agg.EXAMPLES_VERSION] = store.version(EVAL_EXAMPLES)
    table[Agg.GENERATIONS_VERSION] = store.version(GENERATIONS)
    table[Agg.METRICS_VERSION] = store.version(EXAMPLE_METRICS)
    table[Col.EVAL_DATE] = day
    table[Col.MODEL_ID] = model_id
    arrow = pa.Table.from_pandas(table, schema=METRIC_AGGREGATES.schema, preserve_index=False)
    version = store.write_partition(METRIC_AGGREGATES, arrow, partition)
    return AggregatedPartition(table, version, bad, config_hashes)


# ---------------------------------------------------------------- slices


@dataclass(frozen=True)
class SlicedPartition:
    """A written ``metric_slices`` partition: its table, version, the baseline it was
    compared with (None when not compared), and ``worst(metric, n)``: the ``n`` examples
    where the candidate lost most against the baseline (re-read a batch at a time)."""

    table: pd.DataFrame
    version: int
    baseline: str | None
    unmatched: int = 0
    """Scored rows whose example is no longer in the day's eval_examples (the day was
    ingested again after scoring): left out of every slice."""
    worst: Callable[[str, int], dict[str, float]] | None = None


KEY = "__key"
"""A row's 64-bit key (``core.aggregate.row_keys`` of its example id) in the slices'
working tables: rows are matched by key, so no id text is held per row."""


def _keys(batch: pa.RecordBatch) -> np.ndarray:
    return row_keys(batch.column(Col.EXAMPLE_ID).to_numpy(zero_copy_only=False))


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``keys``' position in ``sorted_keys``, and whether it is there."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype="int64"), np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return at, sorted_keys[at] == keys


def _encoded(column: pa.ChunkedArray | pa.Array) -> tuple[list[object], np.ndarray]:
    """A column's distinct values and every row's index into them (nulls one value)."""
    encoded = pc.dictionary_encode(
        column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column,
        null_encoding="encode",
    )
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def _slice_fields(
    store: DeltaStore, day: dt.date, fields: Sequence[str]
) -> tuple[pa.Table, set[str]]:
    """The day's examples as what slicing needs, read a batch at a time and sorted by
    :data:`KEY`: the key, the task, the prompt's length and each metadata field of
    ``fields`` (a column each); and which of the fields some example carries."""
    carried: set[str] = set()
    parts = []
    columns = [Col.EXAMPLE_ID, Col.TASK, Col.PROMPT, Col.METADATA]
    for batch in store.batches(EVAL_EXAMPLES, {Col.EVAL_DATE: day}, columns):
        metadata = batch.column(Col.METADATA)
        carried |= {key for key in fields if pc.any(pc.equal(metadata.keys, key)).as_py()}
        part = {
            KEY: pa.array(_keys(batch), pa.uint64()),
            Col.TASK: batch.column(Col.TASK),
            slices.PROMPT_CHARS: pc.utf8_length(batch.column(Col.PROMPT)),
        }
        part |= {key: pc.map_lookup(metadata, key, "first") for key in fields}
        parts.append(pa.table(part))
    if not parts:
        return pa.table({KEY: pa.array([], pa.uint64())}), carried
    table = pa.concat_tables(parts)
    table = table.take(pc.sort_indices(table.column(KEY)))
    keys = table.column(KEY).to_numpy()
    if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
        raise StageError(
            f"two example ids of {day} have the same 64-bit key (a hash collision or an id "
            "ingested twice): the slices cannot tell their rows apart"
        )
    return table, carried


def _slicing(
    store: DeltaStore, day: dt.date, examples: pa.Table, scored: np.ndarray, slice_by: Sequence[str]
) -> slices.Slicing:
    """The slices of the day's ``examples`` (:func:`_slice_fields`; ``scored``: which of
    them the model has metrics for, whose prompt lengths set the terciles)."""
    keys = examples.column(KEY).to_numpy()
    encoded = {slices.ALL: ([slices.ALL], np.zeros(len(keys), dtype="int32"))}
    for key in slice_by:
        encoded[key] = _encoded(examples.column(key))
    lengths = examples.column(slices.PROMPT_CHARS).to_numpy(zero_copy_only=False)
    terciles = slices.length_terciles(lengths, among=scored)
    encoded[slices.PROMPT_LENGTH] = (list(slices.LENGTH_TERCILES), terciles)
    recurring = np.zeros(len(keys), dtype="int32")
    for batch in store.batches(EVAL_EXAMPLES, {}, [Col.EXAMPLE_ID], before=day):
        at, found = _lookup(keys, _keys(batch))
        recurring[at[found]] = 1
    encoded[slices.RECURRING] = (["new", slices.RECURRING], recurring)
    return slices.Slicing.encoded(encoded)


def _metric_rows(
    store: DeltaStore, day: dt.date, model_id: str, metrics: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """A day×model's ``metrics`` (rows × metrics, NaN where missing) and row keys, sorted
    by key, read a batch at a time."""
    keys, values = [np.empty(0, dtype=np.uint64)], [np.empty((0, len(metrics)))]
    for batch in store.batches(
        EXAMPLE_METRICS, _partition(day, model_id), [Col.EXAMPLE_ID, *metrics]
    ):
        keys.append(_keys(batch))
        values.append(_batch_floats(batch, metrics))
    keys_, values_ = np.concatenate(keys), np.vstack(values)
    order = np.argsort(keys_, kind="stable")
    return keys_[order], values_[order]


def _batch_floats(batch: pa.RecordBatch, names: Sequence[str]) -> np.ndarray:
    """Rows × ``names`` as float64, NaN where missing (a column the batch lacks too)."""
    return np.column_stack([
        batch.column(n).to_numpy(zero_copy_only=False).astype("float64")
        if n in batch.schema.names else np.full(batch.num_rows, np.nan)
        for n in names
    ]) if names else np.empty((batch.num_rows, 0))  # fmt: skip


@_releasing
def slice_day_model(
    store: DeltaStore,
    day: dt.date,
    model_id: str,
    *,
    baseline: str | None,
    slice_by: Sequence[str],
    min_slice_size: int,
    relative_margin: float,
    resamples: int,
    seed: int,
    margin_floor: float,
) -> SlicedPartition:
    """Every metric on every slice of the day×model's scored examples, compared with the
    ``baseline``'s on the same examples (``core.slices``), replacing its partition of
    ``metric_slices``. Without the baseline's metrics for the day, no comparison.

    The scored rows stream past a batch at a time and are matched to their examples
    and the baseline's rows by key: what is held per row is the day's slice values (a
    few bytes per example) and, when compared, the baseline's metrics."""
    partition = _partition(day, model_id)
    metrics = valued_columns(store, EXAMPLE_METRICS, partition, ALL_METRIC_COLUMNS)
    fields = [key for key in slice_by if key != Col.TASK]
    examples, carried = _slice_fields(store, day, fields)
    missing = [key for key in fields if key not in carried]
    if missing:
        raise ValueError(
            f"slice_by names {missing[0]!r}, which no example has (task, or a metadata field)"
        )
    example_keys = examples.column(KEY).to_numpy()
    scored = np.zeros(len(example_keys), dtype=bool)
    rows = unmatched = 0
    for batch in store.batches(EXAMPLE_METRICS, partition, [Col.EXAMPLE_ID]):
        at, found = _lookup(example_keys, _keys(batch))
        scored[at[found]] = True
        rows, unmatched = rows + batch.num_rows, unmatched + int((~found).sum())
    if not rows:
        raise NothingToAggregate(
            f"no example_metrics for {model_id} on {day}: materialize example_metrics first"
        )
    slicing = _slicing(store, day, examples, scored, slice_by)
    reference = _metric_rows(store, day, baseline, metrics) if baseline is not None else None
    if reference is not None and not len(reference[0]):
        reference = None
    geometric = slices.geometric_of(metrics)
    spec = slices.SliceSpec(
        min_slice_size=min_slice_size,
        relative_margin=relative_margin,
        resamples=resamples,
        seed=seed,
        margin_floor=margin_floor,
    )
    sums = slices.slice_sums(slicing, len(metrics), spec)
    for batch in store.batches(EXAMPLE_METRICS, partition, [Col.EXAMPLE_ID, *metrics]):
        keys = _keys(batch)
        at, found = _lookup(example_keys, keys)
        keys, at = keys[found], at[found]
        own = _batch_floats(batch, metrics)[found]
        other = None
        if reference is not None:
            where, paired = _lookup(reference[0], keys)
            other = np.where(paired[:, None], reference[1][where], np.nan)
        sums.add(slices.slice_values(own, other, geometric), slicing.groupings(at), keys)
    table = slices.slice_table(sums, slicing, metrics, spec, compared=reference is not None)
    table[Col.EVAL_DATE] = day
    table[Col.MODEL_ID] = model_id
    arrow = pa.Table.from_pandas(table, schema=METRIC_SLICES.schema, preserve_index=False)
    version = store.write_partition(METRIC_SLICES, arrow, partition)
    if reference is None:
        return SlicedPartition(table, version, None, unmatched)

    def worst(metric: str, n: int) -> dict[str, float]:
        """The ``n`` examples where the candidate lost most on ``metric``."""
        base_keys, base = _metric_rows(store, day, str(baseline), [metric])
        lower = metric in LOWER_IS_BETTER
        found_ids: list[str] = []
        found_changes: list[float] = []
        for batch in store.batches(EXAMPLE_METRICS, partition, [Col.EXAMPLE_ID, metric]):
            where, paired = _lookup(base_keys, _keys(batch))
            change = np.where(paired, _batch_floats(batch, [metric])[:, 0] - base[where, 0], np.nan)
            valid = np.flatnonzero(~np.isnan(change))
            losses = -change[valid] if lower else change[valid]
            kept = valid[np.argsort(losses, kind="stable")[:n]]
            found_ids += batch.column(Col.EXAMPLE_ID).take(pa.array(kept, pa.int64())).to_pylist()
            found_changes += change[kept].tolist()
        order = np.argsort(
            [-c if lower else c for c in found_changes], kind="stable"
        )[:n]  # fmt: skip
        return {found_ids[i]: round(found_changes[i], 4) for i in order}

    return SlicedPartition(table, version, baseline, unmatched, worst)


# ---------------------------------------------------------------- drift

DRIFT_COLUMNS = [Col.EXAMPLE_ID, Col.TASK, Col.PROMPT, Col.REFERENCES, Col.METADATA]
# Prompts embedded per day for the embedding-shift test (a seeded sample beyond this).
DRIFT_EMBEDDED_PROMPTS = 2000


def previous_day(
    store: DeltaStore, spec: TableSpec, day: dt.date, partition: Mapping[str, object] | None = None
) -> dt.date | None:
    """The latest day before ``day`` with rows in ``spec`` (within ``partition``)."""
    days = store.read_arrow(spec, dict(partition or {}), [Col.EVAL_DATE], before=day)
    return pc.max(days.column(Col.EVAL_DATE)).as_py() if days.num_rows else None


@dataclass(frozen=True)
class DriftedDay:
    """A written ``input_drift`` partition: the day compared with, the id changes and
    the tests (empty on the first day)."""

    table: pd.DataFrame
    previous: dt.date | None
    ids: dict[str, int]
    tests: list[drift.DriftTest]
    version: int


@_releasing
def drift_day(
    store: DeltaStore,
    day: dt.date,
    *,
    slice_by: Sequence[str],
    embed: Callable[[list[str]], np.ndarray] | None,
    seed: int,
) -> DriftedDay:
    """The day's ``eval_examples`` against the previous day with examples
    (``core.drift``), replacing the day's partition of ``input_drift``. ``embed`` turns
    prompts into sentence embeddings (None: no embedding test)."""
    before = previous_day(store, EVAL_EXAMPLES, day)
    # a first day has nothing to be compared with: its ids, counted in Arrow, are all it needs
    columns = DRIFT_COLUMNS if before is not None else [Col.EXAMPLE_ID]
    read = store.read_arrow(EVAL_EXAMPLES, {Col.EVAL_DATE: day}, columns)
    if not read.num_rows:
        raise StageError(f"no eval_examples on {day}: materialize its ingestion first")
    rows: list[dict[str, object]] = []
    tests: list[drift.DriftTest] = []
    if before is None:
        added = pc.count_distinct(read.column(Col.EXAMPLE_ID)).as_py()
        ids = {"added": int(added), "removed": 0, "kept": 0}
    else:
        current = read.to_pandas()
        previous = store.read_arrow(
            EVAL_EXAMPLES, {Col.EVAL_DATE: before}, DRIFT_COLUMNS
        ).to_pandas()
        ids = drift.id_changes(previous[Col.EXAMPLE_ID], current[Col.EXAMPLE_ID])
        vectors = None, None
        if embed is not None:
            rng = np.random.default_rng(seed)
            vectors = tuple(  # type: ignore[assignment]
                embed(_sample(frame[Col.PROMPT].astype(str).tolist(), rng))
                for frame in (previous, current)
            )
        tests = drift.drift_tests(previous, current, slice_by, *vectors, seed=seed)
    for name, count in ids.items():
        rows.append({Drift.TEST: f"ids_{name}", Drift.STATISTIC: float(count),
                     Drift.DETAIL: f"{count} example ids {name}"})  # fmt: skip
    for test in tests:
        rows.append({
            Drift.TEST: test.test, Drift.STATISTIC: test.statistic, Drift.P_VALUE: test.p_value,
            Drift.THRESHOLD: test.threshold, Drift.DRIFTED: test.drifted,
            Drift.DETAIL: test.detail,
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=INPUT_DRIFT.columns)
    table[Col.EVAL_DATE] = day
    table[Drift.PREVIOUS_DATE] = before
    arrow = pa.Table.from_pandas(table, schema=INPUT_DRIFT.schema, preserve_index=False)
    version = store.write_partition(INPUT_DRIFT, arrow, {Col.EVAL_DATE: day})
    return DriftedDay(table, before, ids, tests, version)


def _sample(texts: list[str], rng: np.random.Generator) -> list[str]:
    if len(texts) <= DRIFT_EMBEDDED_PROMPTS:
        return texts
    return [texts[i] for i in sorted(rng.choice(len(texts), DRIFT_EMBEDDED_PROMPTS, False))]


def change_since_previous_day(
    store: DeltaStore, day: dt.date, model_id: str, metrics: Sequence[str]
) -> tuple[dt.date | None, dict[str, drift.ChangeSplit]]:
    """Each metric's change since this model's previous scored day, split into the part
    on recurring examples and the part due to the change of examples
    (``core.drift.split_change``; geometric metrics on the log scale). The two days'
    rows are matched by key (:func:`_metric_rows`), not by their id text."""
    before = previous_day(store, EXAMPLE_METRICS, day, {Col.MODEL_ID: model_id})
    if before is None:
        return None, {}
    valued = [
        set(valued_columns(store, EXAMPLE_METRICS, _partition(d, model_id), ALL_METRIC_COLUMNS))
        for d in (before, day)
    ]
    names = [m for m in metrics if all(m in v for v in valued)]
    days = [_metric_rows(store, d, model_id, names) for d in (before, day)]
    out = {}
    for j, metric in enumerate(names):
        values = [pd.Series(rows[:, j], keys) for keys, rows in days]
        if metric in GEOMETRIC_METRICS:
            values = [np.log(v.where(v > 0)) for v in values]
        out[metric] = drift.split_change(*values)
    return before, out


# ---------------------------------------------------------------- log


def day_examples(store: DeltaStore, day: dt.date, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The day's ``eval_examples`` (what :func:`example_table` joins to a model's rows),
    or those of ``ids``."""
    return store.read_arrow(EVAL_EXAMPLES, {Col.EVAL_DATE: day}, ids=ids).to_pandas()


MLFLOW_EXAMPLE_ROWS = 10_000
"""The most example rows a day×model's MLflow run logs (``examples.json``, its charts and
its input dataset): a larger partition logs a seeded sample of this many, and says so in
the run's tags; every row stays in ``example_metrics``."""


def sampled_ids(
    batches: Iterable[Sequence[str] | np.ndarray], n: int, seed: str
) -> tuple[list[str] | None, int]:
    """``n`` of the ids that ``batches`` yield, the same ones for the same ``seed`` (a
    day×model) whatever their order, sorted, and how many ids there were; None when
    there are ``n`` or fewer (take them all). The sample is the ``n`` ids of smallest
    seeded hash (a bottom-k sample, uniform without replacement), kept as the batches
    stream past: memory of ``n`` ids, not of the partition."""
    key = hashlib.sha256(seed.encode()).hexdigest()[:16]
    kept_hashes, kept_ids = np.empty(0, dtype=np.uint64), np.empty(0, dtype=object)
    total = 0
    for batch in batches:
        ids = np.asarray(batch, dtype=object)
        total += len(ids)
        hashes = np.concatenate(
            [kept_hashes, pd.util.hash_array(ids, hash_key=key, categorize=False)]
        )
        ids = np.concatenate([kept_ids, ids])
        if len(hashes) > n:
            smallest = np.argpartition(hashes, n - 1)[:n]
            hashes, ids = hashes[smallest], ids[smallest]
        kept_hashes, kept_ids = hashes, ids
    return (sorted(kept_ids.tolist()) if total > n else None), total


def example_table(
    store: DeltaStore, day: dt.date, model_id: str, ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every example of one day×model (or those of ``ids``) with its output and metrics:
    the table MLflow's UI browses and the dashboard's worst examples come from."""
    partition = _partition(day, model_id)
    examples = day_examples(store, day, ids)
    generated = store.read_arrow(GENERATIONS, partition, ids=ids).to_pandas()
    scored = store.read_arrow(EXAMPLE_METRICS, partition, ids=ids).to_pandas()
    metric_columns = [c for c in ALL_METRIC_COLUMNS if c in scored and scored[c].notna().any()]
    table = (
        examples[[Col.EXAMPLE_ID, Col.DATASET, Col.TASK, Col.PROMPT, Col.CONTEXT, Col.REFERENCES]]
        .merge(generated[[Col.EXAMPLE_ID, Col.OUTPUT, Col.ERROR]], on=Col.EXAMPLE_ID)
        .merge(scored[[Col.EXAMPLE_ID, *metric_columns]], on=Col.EXAMPLE_ID, how="left")
    )
    references = [list(r) if r is not None else [] for r in table[Col.REFERENCES]]
    table[REFERENCE] = [r[0] if r else None for r in references]
    table[Col.REFERENCES] = [json.dumps(r, ensure_ascii=False) for r in references]
    table[Col.EVAL_DATE] = day
    table[Col.MODEL_ID] = model_id
    return table.sort_values(Col.EXAMPLE_ID, ignore_index=True)


def run_params(spec: ModelSpec, config: MetricConfig) -> dict[str, str]:
    """The MLflow params of a day×model run: what produced its numbers."""
    spec_dict = spec.to_dict()
    return {
        "model.backend": spec.backend,
        "model.options": json.dumps(spec_dict["options"], sort_keys=True),
        "model.baseline": str(spec.baseline),
        "generation": json.dumps(spec_dict["generation"], sort_keys=True),
        "generation_config_hash": spec.generation_config_hash,
        "metric_config": json.dumps(config.to_dict(), sort_keys=True, default=str),
        "metric_config_hash": config.hash,
    }


@dataclass(frozen=True)
class LoggedPartition:
    run: LoggedRun
    dataset: str


# What a run's input dataset holds: the examples, not the model's outputs or scores.
EVAL_INPUT_COLUMNS = (
    Col.EXAMPLE_ID,
    Col.DATASET,
    Col.TASK,
    Col.PROMPT,
    Col.CONTEXT,
    Col.REFERENCES,
)


@_releasing
def log_day_model(
    store: DeltaStore,
    spec: ModelSpec,
    config: MetricConfig,
    day: dt.date,
    *,
    tracking_uri: str,
    tags: Mapping[str, str],
    artifact_location: str | None = None,
    retries: int = 3,
    backoff_s: float = 2.0,
) -> LoggedPartition:
    """Log the day×model to its MLflow run (found again by its tags, so a re-run updates
    it): params, every aggregate and its interval, the example table, its slice table
    (when ``metric_slices`` has the partition) and charts. The Delta versions the
    aggregates read join ``tags``."""
    from llm_eval_pipeline.tracking.mlflow_runs import EvalInput, RunKey, log_eval_run

    aggregates = store.read_arrow(METRIC_AGGREGATES, _partition(day, spec.name)).to_pandas()
    if aggregates.empty:
        raise StageError(f"no metric_aggregates for {spec.name} on {day} yet")
    sample, scored = sampled_ids(
        (
            batch.column(Col.EXAMPLE_ID).to_numpy(zero_copy_only=False)
            for batch in store.batches(
                EXAMPLE_METRICS, _partition(day, spec.name), [Col.EXAMPLE_ID]
            )
        ),
        MLFLOW_EXAMPLE_ROWS,
        f"{day}|{spec.name}",
    )
    examples = example_table(store, day, spec.name, ids=sample)
    if sample is not None:
        tags = {**tags, "llm_eval.examples_logged": f"{len(sample)} of {scored} (sample)"}
    sliced = store.read_arrow(METRIC_SLICES, _partition(day, spec.name)).to_pandas()
    dataset = "+".join(sorted(set(examples[Col.DATASET]))) or "empty"
    first = aggregates.iloc[0]
    # Delta versions change on every re-run; MLflow params cannot, so they are tags.
    versions = {
        "llm_eval.dataset_version": str(first[Agg.EXAMPLES_VERSION]),
        "llm_eval.generations_version": str(first[Agg.GENERATIONS_VERSION]),
        "llm_eval.metrics_version": str(first[Agg.METRICS_VERSION]),
    }
    logged = log_eval_run(
        tracking_uri,
        RunKey(dataset, spec.name, day),
        params=run_params(spec, config),
        tags={**versions, **tags},
        aggregates=aggregates,
        examples=examples.drop(columns=[Col.EVAL_DATE]),
        slices=sliced.drop(columns=[Col.EVAL_DATE, Col.MODEL_ID]) if not sliced.empty else None,
        eval_input=EvalInput(
            examples[list(EVAL_INPUT_COLUMNS)],
            dataset,
            str(store.path(EVAL_EXAMPLES)),
            int(first[Agg.EXAMPLES_VERSION]),
        ),
        artifact_location=artifact_location,
        retries=retries,
        backoff_s=backoff_s,
    )
    return LoggedPartition(logged, dataset)
