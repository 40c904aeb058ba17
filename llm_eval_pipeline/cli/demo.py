"""``llm-eval demo``: the demo week (``demo/week.py``) run through Dagster, then a summary
of what happened and where to see it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from llm_eval_pipeline.cli.run import (
    Pipeline,
    build_demo,
    print_next_steps,
)
from llm_eval_pipeline.cli.status import partition_counts, print_summary
from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    METRIC_SLICES,
    QUARANTINED_EXAMPLES,
    Agg,
    Col,
    Slc,
)
from llm_eval_pipeline.core.slices import regressions, slice_name
from llm_eval_pipeline.demo import DEMO_DATASET_NAME, demo_dataset_path
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.demo.week import (
    BATCH64_MODEL,
    BF16_MODEL,
    CUT_MAX_NEW_TOKENS,
    DEMO_MARGINS,
    WeekPlan,
    model_args,
    redeploy_args,
    write_demo_config,
    write_week_files,
)
from llm_eval_pipeline.settings import Settings

NEW_MODEL_SENSOR = "new_model_sensor"


def run_demo_week(settings: Settings, days: list[dt.date]) -> int:
    """Build the demo model, write the week's files and run each day in order."""
    from llm_eval_pipeline.cli import main as cli

    plan = WeekPlan.of(days)
    config = settings.home / "config.yaml"
    if write_demo_config(config):
        print(f"Wrote the demo's regression margins to {config}")
        settings = Settings.load()
    elif any(getattr(settings, key) != value for key, value in DEMO_MARGINS.items()):
        print(
            f"{config} sets its own regression margins; the demo week was planned with "
            f"{DEMO_MARGINS}"
        )
    build_demo(settings, names=(QA_MODEL,))
    base = write_week_files(
        Path(demo_dataset_path()), settings.home / "demo", settings.incoming, plan
    )
    settings = settings.with_dataset(base, DEMO_DATASET_NAME)
    args = model_args(settings.models_dir)
    registry = ModelRegistry(settings.models_yaml)
    if any(spec.name == BATCH64_MODEL for spec in registry.load()):  # from an earlier demo
        cli(["models", "remove", BATCH64_MODEL])
    for name in args:
        if name != BATCH64_MODEL:
            cli(["models", "add", *args[name], "--replace"])
    pipeline = Pipeline(settings)
    models = [name for name in args if name != BATCH64_MODEL]
    pipeline.add_models(models)
    failures = 0
    for number, day in enumerate(days, 1):
        step = f"[day {number}/{len(days)}] {day}"
        if day == plan.regression_day:
            print(
                f"{step}: {BF16_MODEL} redeployed with max_new_tokens {CUT_MAX_NEW_TOKENS} "
                "(`llm-eval models add --replace`)"
            )
            cli(["models", "add", *redeploy_args(settings.models_dir)])
        if not pipeline.ingest(day, f"{step} ingest"):
            failures += 1
            continue
        for model in models:
            failures += not pipeline.evaluate(day, model, f"{step} {model}")
        if day == plan.join_day:
            print(f"{step}: registering {BATCH64_MODEL} (`llm-eval models add`)")
            cli(["models", "add", *args[BATCH64_MODEL]])
            failures += _new_model_sensor(pipeline, models, step)
            models.append(BATCH64_MODEL)
    failures += not pipeline.dashboard("[dashboard]")
    print_summary(settings, days)
    print_week(settings, plan)
    print_next_steps(settings)
    return 1 if failures else 0


def _new_model_sensor(pipeline: Pipeline, seen: list[str], step: str) -> int:
    """One tick of the new-model sensor, as the daemon would run it, and the backfill runs
    it requests; the number that failed."""
    from dagster import build_sensor_context

    sensor = pipeline.defs.resolve_sensor_def(NEW_MODEL_SENSOR)
    context = build_sensor_context(
        instance=pipeline.instance,
        cursor=json.dumps(sorted(seen)),
        resources=pipeline.defs.resources,
    )
    result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        pipeline.instance.add_dynamic_partitions(
            request.partitions_def_name, request.partition_keys
        )
    runs = result.run_requests or []
    print(f"{step}: {NEW_MODEL_SENSOR} requested {len(runs)} backfill run(s)")
    failed = 0
    for request in runs:
        key = request.partition_key
        day = dt.date.fromisoformat(key.keys_by_dimension[Col.EVAL_DATE])
        model = key.keys_by_dimension[Col.MODEL_ID]
        failed += not pipeline.evaluate(day, model, f"{step} backfill {day} {model}", request.tags)
    return failed


def print_week(settings: Settings, plan: WeekPlan) -> None:
    """What happened this week, read back from the tables, and where to look at it."""
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    examples = _per_day(store, EVAL_EXAMPLES)
    quarantined = _per_day(store, QUARANTINED_EXAMPLES)
    print("\nThe demo week:")
    for day in plan.days:
        notes = [f"{examples.get(day, 0)} examples"]
        if quarantined.get(day):
            notes.append(f"{quarantined[day]} row(s) quarantined")
        dropped = [batch for batch, first in plan.drops.items() if first == day]
        if dropped:
            notes.append(f"new in incoming/{day}/: {', '.join(dropped)}")
        if day == plan.join_day:
            notes.append(f"{BATCH64_MODEL} registered; the sensor backfilled it over earlier days")
        if day == plan.regression_day:
            notes.append(f"{BF16_MODEL} redeployed with max_new_tokens {CUT_MAX_NEW_TOKENS}")
        print(f"  {day}: {'; '.join(notes)}")
    table = store.read_arrow(METRIC_SLICES).to_pandas()
    last = table[
        (table[Col.EVAL_DATE].astype(str) == plan.regression_day.isoformat())
        & (table[Col.MODEL_ID] == BF16_MODEL)
    ]
    found = regressions(last, settings.regression_metrics)
    if found.empty:
        print(f"  {plan.regression_day}: no regression verdict for {BF16_MODEL} (unexpected)")
        return
    print(f"\nThe regression of {plan.regression_day} ({BF16_MODEL} against the baseline):")
    for row in found.to_dict("records"):
        print(
            f"  {slice_name(row[Slc.KEY], row[Slc.VALUE])}: {row[Agg.METRIC]} "
            f"{row[Slc.DIFF]:+.3f} [{row[Slc.DIFF_CI_LOW]:+.3f}, {row[Slc.DIFF_CI_HIGH]:+.3f}], "
            f"q = {row[Slc.Q_VALUE]:.2g}"
        )
    print(
        "Where to see it: in Dagster (`make ui`), asset metric_slices, partition "
        f"{plan.regression_day}|{BF16_MODEL}, check no_regression_vs_baseline; in MLflow, "
        f"the run of {BF16_MODEL} on {plan.regression_day} (tag llm_eval.regressed_slices, "
        "slice metrics); on the dashboard, the Compare and Slices views."
    )


def _per_day(store, spec) -> dict[dt.date, int]:
    """Rows per day of a table partitioned by day alone."""
    return {r[Col.EVAL_DATE]: r["count_all"] for r in partition_counts(store, spec)}
