"""Dagster metadata built from table specs and Arrow tables."""

from __future__ import annotations

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

from llm_eval_pipeline.core.schema import TableSpec

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 60


def column_schema(spec: TableSpec) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name=f.name, type=str(f.type), description=spec.column_docs.get(f.name))
            for f in spec.schema
        ]
    )


def markdown_preview(
    table: pa.Table, columns: list[str], rows: int = PREVIEW_ROWS
) -> MetadataValue:
    """The first ``rows`` rows of ``table`` as a markdown table, long cells shortened."""
    head = table.select(columns).slice(0, rows).to_pylist()
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in head:
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    if not head:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    if len(text) > PREVIEW_CELL_CHARS:
        text = text[: PREVIEW_CELL_CHARS - 1] + "…"
    return text
