"""Partitions: one per day, and day × registered model for everything past ingestion."""

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
)

from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.settings import get_settings

MODELS_PARTITION = "models"

# end_offset=1: today's partition exists, so files dropped today can be evaluated today.
daily_partitions = DailyPartitionsDefinition(
    start_date=get_settings().start_date.isoformat(), end_offset=1
)
model_partitions = DynamicPartitionsDefinition(name=MODELS_PARTITION)
day_model_partitions = MultiPartitionsDefinition(
    {Col.EVAL_DATE: daily_partitions, Col.MODEL_ID: model_partitions}
)
