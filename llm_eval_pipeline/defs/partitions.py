"""Partitions: one per day, and day × registered model for everything past ingestion."""

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
)

from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.settings import get_settings

MODELS_PARTITION = "models"

# The latest partition is yesterday: a day is evaluated once it is over, and the daily
# schedule materializes the previous day.
daily_partitions = DailyPartitionsDefinition(start_date=get_settings().start_date.isoformat())
model_partitions = DynamicPartitionsDefinition(name=MODELS_PARTITION)
day_model_partitions = MultiPartitionsDefinition(
    {Col.EVAL_DATE: daily_partitions, Col.MODEL_ID: model_partitions}
)
