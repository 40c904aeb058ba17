"""The new-model sensor: registering a model in models.yaml backfills it, no click needed."""

import datetime as dt
import json

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    MultiPartitionKey,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, GENERATIONS, Col
from llm_eval_pipeline.defs.jobs import generation_job
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION, model_partitions
from llm_eval_pipeline.defs.resources import DeltaStoreResource, ModelsResource
from llm_eval_pipeline.delta.store import DeltaStore


def backfill_days(store: DeltaStore, model_id: str, today: dt.date, days: int) -> list[dt.date]:
    """The past ``days`` days before ``today`` that have eval_examples and no generations
    for ``model_id`` yet, oldest first."""
    window = {(today - dt.timedelta(days=i)).isoformat() for i in range(1, days + 1)}
    have_examples = {p[Col.EVAL_DATE] for p in store.partitions(EVAL_EXAMPLES)}
    done = {p[Col.EVAL_DATE] for p in store.partitions(GENERATIONS) if p[Col.MODEL_ID] == model_id}
    return [dt.date.fromisoformat(day) for day in sorted((window & have_examples) - done)]


@sensor(
    job=generation_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches models.yaml. A newly registered model gets its model partition "
    "and runs for the past backfill_days days that have eval_examples. A removed model "
    "keeps its partitions and tables.",
)
def new_model_sensor(
    context: SensorEvaluationContext, models: ModelsResource, delta: DeltaStoreResource
) -> SensorResult | SkipReason:
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    registered = [spec.name for spec in models.registry().load()]
    new = [name for name in registered if name not in seen]
    cursor = json.dumps(sorted(registered))
    if not new:
        if set(registered) != seen:  # only removals: remember them, request nothing
            context.update_cursor(cursor)
        return SkipReason(f"no new models in {models.registry_path}")

    partitions = set(context.instance.get_dynamic_partitions(MODELS_PARTITION))
    to_add = [name for name in new if name not in partitions]
    store = delta.store()
    today = dt.datetime.now(dt.UTC).date()
    run_requests = [
        RunRequest(
            run_key=f"new-model:{name}:{day.isoformat()}",
            partition_key=MultiPartitionKey({Col.EVAL_DATE: day.isoformat(), Col.MODEL_ID: name}),
            tags={"llm_eval/trigger": "new_model_sensor"},
        )
        for name in new
        for day in backfill_days(store, name, today, models.backfill_days)
    ]
    context.log.info(f"new models {new}: {len(run_requests)} backfill runs")
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[model_partitions.build_add_request(to_add)] if to_add else [],
        cursor=cursor,
    )


automation_sensor = AutomationConditionSensorDefinition(
    "follow_daily_ingest",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions: once the daily schedule has "
    "ingested a day, every registered model's day×model chain of that day runs "
    "(generations, example_metrics, metric_aggregates, mlflow_eval_runs), and the "
    "dashboard refreshes after new aggregates land.",
)
