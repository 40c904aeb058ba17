"""Ingestion: the day's dataset rows, validated, into ``eval_examples`` and
``quarantined_examples``."""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from dagster_pyspark import PySparkResource

from llm_eval_pipeline.core.dataset import DatasetReadError
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col
from llm_eval_pipeline.defs.metadata import OWNERS, column_schema, markdown_preview
from llm_eval_pipeline.defs.partitions import daily_partitions
from llm_eval_pipeline.defs.resources import DatasetResource, DeltaStoreResource
from llm_eval_pipeline.stages import ingest_day

EXAMPLES_KEY = AssetKey(EVAL_EXAMPLES.name)
QUARANTINE_KEY = AssetKey(QUARANTINED_EXAMPLES.name)
ROWS_BALANCE_CHECK = "rows_balance"
GROUP = "ingestion"

EXAMPLE_PREVIEW_COLUMNS = [Col.EXAMPLE_ID, Col.TASK, Col.PROMPT, Col.REFERENCES, Col.SOURCE_ROW]
QUARANTINE_PREVIEW_COLUMNS = [Col.SOURCE_FILE, Col.SOURCE_ROW, Col.FIELD, Col.REASON, Col.MESSAGE]


@multi_asset(
    specs=[
        AssetSpec(
            EXAMPLES_KEY,
            description=(
                "The day's evaluation examples: the static dataset plus the files dropped in "
                "incoming/<day>/, normalised and validated. One row per example per day; "
                "example_id is a content hash, stable across days."
            ),
            kinds={"delta", "spark", "python"},
            group_name=GROUP,
            owners=OWNERS,
            metadata={"dagster/column_schema": column_schema(EVAL_EXAMPLES)},
        ),
        AssetSpec(
            QUARANTINE_KEY,
            description=(
                "Rows of the day's dataset that failed validation, each with its reason, "
                "the field at fault, its file and row, and the raw text."
            ),
            kinds={"delta", "python"},
            group_name=GROUP,
            owners=OWNERS,
            metadata={"dagster/column_schema": column_schema(QUARANTINED_EXAMPLES)},
        ),
    ],
    partitions_def=daily_partitions,
    check_specs=[
        AssetCheckSpec(
            ROWS_BALANCE_CHECK,
            asset=EXAMPLES_KEY,
            description="Rows read = rows in eval_examples + rows in quarantined_examples "
            "for the partition, counted back from Delta.",
        )
    ],
    can_subset=False,
)
def ingest_examples(
    context: AssetExecutionContext,
    dataset: DatasetResource,
    delta: DeltaStoreResource,
    spark: PySparkResource,
) -> Iterator[MaterializeResult]:
    """Read, validate and write one day of examples; quarantine what is invalid."""
    day = dt.date.fromisoformat(context.partition_key)
    store = delta.store()
    try:
        done = ingest_day(
            store,
            spark.spark_session,
            day,
            static_path=dataset.static_path,
            incoming=Path(dataset.incoming_dir),
            allowed_roots=[Path(p) for p in dataset.allowed_roots],
            dataset_name=dataset.name,
            max_field_chars=dataset.max_field_chars,
            default_task=dataset.default_task,
            spark_ingest_min_bytes=dataset.spark_ingest_min_bytes,
        )
    except DatasetReadError as exc:
        raise Failure(description=str(exc)) from exc
    context.log.info(
        f"{day}: {done.rows_in} rows in, {done.stored_valid} valid, "
        f"{done.stored_quarantined} quarantined ({done.reasons})"
    )

    counts = {
        "rows_in": done.rows_in,
        "rows_valid": done.stored_valid,
        "rows_quarantined": done.stored_quarantined,
        "read_on": "Spark executors" if done.on_executors else "the driver",
    }
    by_reason = {f"quarantined_{reason}": n for reason, n in sorted(done.reasons.items())}
    yield MaterializeResult(
        asset_key=EXAMPLES_KEY,
        metadata={
            **counts,
            **by_reason,
            "dagster/row_count": done.stored_valid,
            "dagster/column_schema": column_schema(EVAL_EXAMPLES),
            "delta_version": done.examples_version,
            "delta_table": MetadataValue.path(str(store.path(EVAL_EXAMPLES))),
            "sources": MetadataValue.json(done.rows_per_source),
            "aliases_used": MetadataValue.json(done.aliases_used),
            "preview": markdown_preview(done.examples_preview, EXAMPLE_PREVIEW_COLUMNS),
        },
        check_results=[
            AssetCheckResult(
                check_name=ROWS_BALANCE_CHECK,
                asset_key=EXAMPLES_KEY,
                passed=done.balanced,
                metadata={
                    "rows_in": done.rows_in,
                    "stored_valid": done.stored_valid,
                    "stored_quarantined": done.stored_quarantined,
                },
            )
        ],
    )
    yield MaterializeResult(
        asset_key=QUARANTINE_KEY,
        metadata={
            **counts,
            **by_reason,
            "dagster/row_count": done.stored_quarantined,
            "dagster/column_schema": column_schema(QUARANTINED_EXAMPLES),
            "delta_version": done.quarantine_version,
            "delta_table": MetadataValue.path(str(store.path(QUARANTINED_EXAMPLES))),
            "preview": markdown_preview(done.quarantine_preview, QUARANTINE_PREVIEW_COLUMNS),
        },
    )
