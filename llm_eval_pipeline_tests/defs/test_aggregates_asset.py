"""metric_aggregates through real Dagster materializations: the gold table, its
metadata, and the regression checks against the baseline model."""

import datetime as dt
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize

from llm_eval_pipeline.core.models import ModelRegistry, parse_spec
from llm_eval_pipeline.core.schema import EXAMPLE_METRICS, METRIC_AGGREGATES, Agg, Col
from llm_eval_pipeline.defs.assets.aggregates import (
    ERROR_RATE_CHECK,
    RANGE_CHECK,
    REGRESSION_CHECK,
    metric_aggregates,
)
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline_tests.conftest import write_jsonl
from llm_eval_pipeline_tests.defs.test_generation_asset import key

DAY = "2026-11-20"
CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Chile", "Santiago"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Cuba", "Havana"),
    ("Ghana", "Accra"),
]
ROWS = [
    {
        "prompt": f"What is the capital of {country}?",
        "context": f"The capital of {country} is {city}.",
        "references": [city],
        "right": f"The capital of {country} is {city}.",
        "wrong": f"The capital of {country} is Springfield.",
    }
    for country, city in CAPITALS
]


def logged(name: str, column: str, baseline: bool = False):
    raw = {"name": name, "backend": "precomputed", "options": {"column": column}}
    return parse_spec({**raw, "baseline": baseline})


@pytest.fixture
def chain(home: Settings, tmp_path: Path, spark):
    settings = home.with_dataset(write_jsonl(tmp_path / "data" / "capitals.jsonl", ROWS))
    instance = DagsterInstance.ephemeral()
    registry = ModelRegistry(settings.models_yaml)
    specs = [logged("base", "right", True), logged("same", "right"), logged("worse", "wrong")]
    for spec in specs:
        registry.add(spec)
    instance.add_dynamic_partitions(MODELS_PARTITION, [s.name for s in specs])
    resources = build_resources(settings)
    assert materialize(
        [ingest_examples], partition_key=DAY, resources=resources, instance=instance
    ).success

    def run(model: str):
        return materialize(
            [generations, example_metrics, metric_aggregates],
            partition_key=key(DAY, model),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )

    return settings, run


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_gold_table_metadata_and_checks(chain) -> None:
    settings, run = chain
    base = run("base")
    assert base.success
    assert checks(base)[REGRESSION_CHECK].metadata["note"].value == "this is the baseline"

    same = run("same")
    evaluations = checks(same)
    assert evaluations[REGRESSION_CHECK].passed, "identical outputs are no regression"
    assert evaluations[RANGE_CHECK].passed and evaluations[ERROR_RATE_CHECK].passed

    worse = run("worse")
    assert worse.success, "a failing WARN check does not fail the run"
    regression = checks(worse)[REGRESSION_CHECK]
    assert not regression.passed
    assert regression.severity == AssetCheckSeverity.WARN
    assert "answer_correctness" in regression.description
    assert set(regression.metadata) >= {
        "baseline",
        "comparison",
        "answer_correctness_worst_examples",
    }
    assert "| answer_correctness | 12 |" in regression.metadata["comparison"].value

    (event,) = worse.asset_materializations_for_node(METRIC_AGGREGATES.name)
    metadata = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert isinstance(metadata["answer_correctness"], float)
    assert metadata["error_rate"] == 0.0
    board = metadata["leaderboard"]
    assert "base (baseline)" in board and "| worse |" in board and "answer_correctness" in board

    store = DeltaStore(settings.delta_dir)
    table = store.read_arrow(METRIC_AGGREGATES).to_pandas()
    assert sorted(table[Col.MODEL_ID].unique()) == ["base", "same", "worse"]
    mine = table[table[Col.MODEL_ID] == "worse"].set_index(Agg.METRIC)
    scored = store.read_arrow(EXAMPLE_METRICS, {Col.MODEL_ID: "worse"}).to_pandas()
    assert mine.loc["rougeL", Agg.MEAN] == pytest.approx(scored["rougeL"].mean())
    assert mine.loc["rougeL", Agg.COUNT] == 12
    assert set(mine[Agg.METRICS_VERSION]) == {store.version(EXAMPLE_METRICS)}
    assert (mine[Col.EVAL_DATE] == dt.date.fromisoformat(DAY)).all()

    again = run("worse")
    assert again.success
    rerun = store.read_arrow(METRIC_AGGREGATES).to_pandas()
    assert len(rerun) == len(table), "a re-run replaces the partition"
