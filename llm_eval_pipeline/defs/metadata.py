"""Dagster metadata built from table specs and Arrow tables."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema

from llm_eval_pipeline.core.schema import HEADLINE_METRICS, Agg, Col, TableSpec

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


def leaderboard_markdown(day: pd.DataFrame, baseline: str | None) -> str:
    """The headline metrics of every model in ``day`` (``metric_aggregates`` rows of one
    day) as a markdown table: mean and 95% CI, the baseline marked."""
    present = [m for m in HEADLINE_METRICS if m in set(day[Agg.METRIC])]
    lines = [
        "| model | " + " | ".join(present) + " |",
        "| --- |" + " --- |" * len(present),
    ]
    for model, rows in day.groupby(Col.MODEL_ID, sort=True):
        by_metric = rows.set_index(Agg.METRIC)
        cells = []
        for metric in present:
            if metric not in by_metric.index:
                cells.append("")
                continue
            row = by_metric.loc[metric]
            mean, low, high = row[Agg.MEAN], row[Agg.CI_LOW], row[Agg.CI_HIGH]
            ci = "" if math.isnan(low) else f" [{low:.3f}, {high:.3f}]"
            cells.append(f"{mean:.3f}{ci}")
        name = f"{model} (baseline)" if model == baseline else str(model)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
