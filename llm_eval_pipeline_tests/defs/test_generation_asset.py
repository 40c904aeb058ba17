"""Generation through real Dagster materializations, the new-model sensor, and the
automation that follows the daily ingestion."""

import datetime as dt
import math
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    MultiPartitionKey,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
    materialize,
)

from llm_eval_pipeline.core.dataset import ingest
from llm_eval_pipeline.core.models import ModelRegistry, parse_spec
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, EXAMPLE_METRICS, GENERATIONS, Col
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.defs.sensors import new_model_sensor
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline_tests.conftest import write_jsonl
from llm_eval_pipeline_tests.openai_server import FakeServer, serve

DAY = "2026-11-20"
ROWS = [
    {"prompt": f"What is {i} times 3?", "references": [str(3 * i)], "logged": str(3 * i)}
    for i in range(5)
]


def precomputed(name: str, column: str = "logged"):
    return parse_spec({"name": name, "backend": "precomputed", "options": {"column": column}})


@pytest.fixture
def setup(home: Settings, tmp_path: Path):
    settings = home.with_dataset(write_jsonl(tmp_path / "data" / "times.jsonl", ROWS), "times")
    instance = DagsterInstance.ephemeral()
    return settings, instance


def register(settings: Settings, instance: DagsterInstance, *specs) -> None:
    registry = ModelRegistry(settings.models_yaml)
    for spec in specs:
        registry.add(spec, replace=True)
    instance.add_dynamic_partitions(MODELS_PARTITION, [s.name for s in specs])


def run(settings, instance, asset, key, **kwargs):
    return materialize(
        [asset], partition_key=key, resources=build_resources(settings), instance=instance, **kwargs
    )


def key(day: str, model: str) -> MultiPartitionKey:
    return MultiPartitionKey({Col.EVAL_DATE: day, Col.MODEL_ID: model})


def meta(result) -> dict[str, object]:
    (event,) = result.asset_materializations_for_node(GENERATIONS.name)
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def test_day_by_model_partition_is_generated_and_replaced_on_rerun(
    setup, tiny_specs, spark
) -> None:
    settings, instance = setup
    register(settings, instance, tiny_specs[QA_MODEL], precomputed("logged"))
    assert run(settings, instance, ingest_examples, DAY).success
    for model in (QA_MODEL, "logged", QA_MODEL):
        result = run(settings, instance, generations, key(DAY, model))
        assert result.success
    metadata = meta(result)
    assert metadata["rows"] == 5 and metadata["errors"] == 0
    assert metadata["device"] == "cpu"
    assert metadata["model_loads"] <= metadata["python_workers"]
    assert metadata["tokens_per_second"] >= 0 and metadata["output_tokens"] >= 0
    assert metadata["generation_config_hash"] == tiny_specs[QA_MODEL].generation_config_hash
    assert "| example_id | output |" in metadata["sample"]

    store = DeltaStore(settings.delta_dir)
    counts = {
        r[Col.MODEL_ID]: r["count"]
        for r in store.read(spark, GENERATIONS).groupBy(Col.MODEL_ID).count().collect()
    }
    assert counts == {QA_MODEL: 5, "logged": 5}  # the re-run replaced, not appended
    logged = store.read(
        spark, GENERATIONS, {Col.EVAL_DATE: dt.date(2026, 11, 20), Col.MODEL_ID: "logged"}
    )
    assert sorted(r[Col.OUTPUT] for r in logged.collect()) == ["0", "12", "3", "6", "9"]


def test_error_rate_over_the_threshold_fails_without_writing(setup, spark) -> None:
    settings, instance = setup
    register(settings, instance, precomputed("broken", column="missing_column"))
    assert run(settings, instance, ingest_examples, DAY).success
    result = run(settings, instance, generations, key(DAY, "broken"), raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert "5 of 5 rows failed" in description and "missing_column" in description
    assert DeltaStore(settings.delta_dir).read(spark, GENERATIONS).count() == 0


def test_unregistered_model_fails_with_a_hint(setup, spark) -> None:
    settings, instance = setup
    instance.add_dynamic_partitions(MODELS_PARTITION, ["ghost"])
    assert run(settings, instance, ingest_examples, DAY).success
    result = run(settings, instance, generations, key(DAY, "ghost"), raise_on_error=False)
    (failure,) = result.get_step_failure_events()
    assert "llm-eval models add" in failure.step_failure_data.user_failure_data.description


def _write_examples(settings: Settings, days: list[dt.date]) -> None:
    store = DeltaStore(settings.delta_dir)
    for day in days:
        result = ingest([settings.dataset], day)
        store.write_partition(EVAL_EXAMPLES, result.examples, {Col.EVAL_DATE: day})


def test_new_model_sensor_adds_the_partition_and_backfills_past_days(setup) -> None:
    settings, instance = setup
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=n) for n in (1, 2, 3, 9)]
    _write_examples(settings, days)
    registry = ModelRegistry(settings.models_yaml)
    registry.add(precomputed("a"))
    # model "a" already has generations for one of the days: not requested again
    done = {Col.EVAL_DATE: days[1], Col.MODEL_ID: "a"}
    row = {Col.EXAMPLE_ID: "x", **done}
    DeltaStore(settings.delta_dir).write_partition(
        GENERATIONS, pa.Table.from_pylist([row], schema=GENERATIONS.schema), done
    )
    resources = build_resources(settings)

    result = new_model_sensor(build_sensor_context(instance=instance, resources=resources))
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == MODELS_PARTITION and list(add.partition_keys) == ["a"]
    requested = sorted(str(r.partition_key) for r in result.run_requests)
    assert requested == sorted(f"{d.isoformat()}|a" for d in (days[0], days[2]))
    assert all(r.job_name in (None, "evaluate_models") for r in result.run_requests)

    again = new_model_sensor(
        build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert isinstance(again, SkipReason)

    registry.add(precomputed("b"))
    registry.remove("a")
    later = new_model_sensor(
        build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert sorted(str(r.partition_key) for r in later.run_requests) == sorted(
        f"{d.isoformat()}|b" for d in days[:3]
    )
    assert [list(r.partition_keys) for r in later.dynamic_partitions_requests] == [["b"]]
    assert not any(type(r).__name__.startswith("Delete") for r in later.dynamic_partitions_requests)


def test_generations_follow_the_latest_days_ingestion_for_every_model(setup) -> None:
    settings, instance = setup
    register(settings, instance, precomputed("a"), precomputed("b"))
    latest = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assets = Definitions(assets=[ingest_examples, generations], resources=build_resources(settings))
    first = evaluate_automation_conditions(defs=assets, instance=instance)
    assert first.get_requested_partitions(AssetKey(GENERATIONS.name)) == set()
    assert run(settings, instance, ingest_examples, latest).success
    after = evaluate_automation_conditions(defs=assets, instance=instance, cursor=first.cursor)
    requested = {str(k) for k in after.get_requested_partitions(AssetKey(GENERATIONS.name))}
    assert requested == {f"{latest}|a", f"{latest}|b"}


def test_example_metrics_scores_the_partition_and_replaces_it(setup, spark) -> None:
    settings, instance = setup
    register(settings, instance, precomputed("logged"))
    assert run(settings, instance, ingest_examples, DAY).success
    assert run(settings, instance, generations, key(DAY, "logged")).success
    for _ in range(2):
        result = run(settings, instance, example_metrics, key(DAY, "logged"))
        assert result.success
    (event,) = result.asset_materializations_for_node(EXAMPLE_METRICS.name)
    metadata = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert metadata["rows"] == 5
    assert metadata["mean_exact_match"] == 1.0  # the logged answers are the references
    assert metadata["null_metrics"]["reference_perplexity"] == 5
    assert "for the precomputed backend" in next(iter(metadata["null_reasons"]))
    assert set(metadata["seconds_per_metric_group"]) >= {"rouge", "correctness"}
    stored = DeltaStore(settings.delta_dir).read(spark, EXAMPLE_METRICS)
    assert stored.count() == 5
    assert {r["metric_config_hash"] for r in stored.collect()} == {metadata["metric_config_hash"]}


def test_an_endpoints_logprobs_give_output_perplexity(setup, spark, monkeypatch) -> None:
    settings, instance = setup
    with serve(FakeServer(), monkeypatch) as server:
        remote = parse_spec(
            {
                "name": "remote",
                "backend": "openai",
                "options": {"base_url": server.url, "model": "m"},
                "price_per_1k_prompt_tokens": 0.5,
                "price_per_1k_output_tokens": 2.0,
            }
        )
        register(settings, instance, remote)
        assert run(settings, instance, ingest_examples, DAY).success
        assert run(settings, instance, generations, key(DAY, "remote")).success
    assert run(settings, instance, example_metrics, key(DAY, "remote")).success
    store = DeltaStore(settings.delta_dir)
    generated = store.read_arrow(GENERATIONS).to_pylist()
    assert {(r[Col.OUTPUT_LOGPROB], r[Col.OUTPUT_LOGPROB_TOKENS]) for r in generated} == {(-1.5, 2)}
    scored = store.read_arrow(EXAMPLE_METRICS).to_pylist()
    assert [r["output_perplexity"] for r in scored] == pytest.approx([math.exp(0.75)] * 5)
    assert all(r["reference_perplexity"] is None for r in scored)

    # the endpoint's usage, at the spec's prices, is the partition's cost
    from llm_eval_pipeline.core.schema import METRIC_AGGREGATES, Agg
    from llm_eval_pipeline.defs.assets.aggregates import metric_aggregates

    assert run(settings, instance, metric_aggregates, key(DAY, "remote")).success
    table = store.read_arrow(METRIC_AGGREGATES).to_pandas().set_index(Agg.METRIC)
    prompt = sum(r[Col.PROMPT_TOKENS] for r in generated)
    assert prompt > 0 and table.loc["prompt_tokens", Agg.MEAN] == prompt / 5
    assert table.loc["cost_usd", Agg.MEAN] == pytest.approx((prompt * 0.5 + 5 * 2 * 2.0) / 1000)
    assert table.loc["latency_ms", Agg.P95] >= table.loc["latency_ms", Agg.P50]
