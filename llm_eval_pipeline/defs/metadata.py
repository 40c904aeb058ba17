"""Dagster metadata built from table specs and Arrow tables."""

from __future__ import annotations

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.schema import TableSpec

OWNERS = ["team:llm-eval"]
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


def leaderboard_markdown(board: Leaderboard) -> str:
    """The leaderboard as a markdown table: a row per model (the baseline marked), a
    column per metric, mean and 95% CI, the best in bold."""
    lines = [
        "| model | " + " | ".join(board.metrics) + " |",
        "| --- |" + " --- |" * len(board.metrics),
    ]
    for model in board.models:
        cells = []
        for metric in board.metrics:
            entry = board.entry(model, metric)
            if entry is None:
                cells.append("")
                continue
            ci = f" [{entry.ci_low:.3f}, {entry.ci_high:.3f}]" if entry.has_interval else ""
            mean = f"**{entry.mean:.3f}**" if entry.best else f"{entry.mean:.3f}"
            cells.append(f"{mean}{ci}")
        lines.append(f"| {board.label(model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
