"""Partitions: one per day, and day × registered model for everything past ingestion.

The assets are declared with partitions that start on the declared default
``start_date``; :func:`with_start_date` gives them the configured one when the
definitions are built (``definitions.build_definitions``), so importing the package reads
no settings."""

import dataclasses
import datetime as dt

from dagster import (
    AssetsDefinition,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
)

from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.settings import Settings

MODELS_PARTITION = "models"
DECLARED_START_DATE: dt.date = {f.name: f for f in dataclasses.fields(Settings)}[
    "start_date"
].default

model_partitions = DynamicPartitionsDefinition(name=MODELS_PARTITION)


def daily(start_date: dt.date) -> DailyPartitionsDefinition:
    """One partition per UTC day from ``start_date``; the latest is yesterday: a day is
    evaluated once it is over, and the daily schedule materializes the previous day."""
    return DailyPartitionsDefinition(start_date=start_date.isoformat())


def day_by_model(start_date: dt.date) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {Col.EVAL_DATE: daily(start_date), Col.MODEL_ID: model_partitions}
    )


daily_partitions = daily(DECLARED_START_DATE)
day_model_partitions = day_by_model(DECLARED_START_DATE)


def with_start_date(asset: AssetsDefinition, start_date: dt.date) -> AssetsDefinition:
    """``asset`` with its daily (or day × model) partitions starting on ``start_date``."""
    if asset.partitions_def == daily_partitions:
        partitions = daily(start_date)
    elif asset.partitions_def == day_model_partitions:
        partitions = day_by_model(start_date)
    else:
        return asset
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))
