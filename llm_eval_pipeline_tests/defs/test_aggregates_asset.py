"""metric_aggregates through real Dagster materializations: the gold table, its
metadata, and the regression checks against the baseline model."""

import datetime as dt
import json
from pathlib import Path

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
    materialize,
)
from mlflow import MlflowClient

from llm_eval_pipeline.core.models import ModelRegistry, parse_spec
from llm_eval_pipeline.core.schema import (
    EXAMPLE_METRICS,
    GENERATIONS,
    METRIC_AGGREGATES,
    METRIC_SLICES,
    Agg,
    Col,
)
from llm_eval_pipeline.defs.assets.aggregates import (
    ERROR_RATE_CHECK,
    RANGE_CHECK,
    metric_aggregates,
)
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.assets.slices import (
    ENOUGH_EXAMPLES_CHECK,
    REGRESSION_CHECK,
    metric_slices,
)
from llm_eval_pipeline.defs.assets.tracking import DASHBOARD_KEY, eval_dashboard, mlflow_eval_runs
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION
from llm_eval_pipeline.defs.resources import TrackingResource, build_resources
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline.tracking.mlflow_runs import experiment_name
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

    def run(model: str, settings_used: Settings | None = None):
        return materialize(
            [generations, example_metrics, metric_aggregates, metric_slices],
            partition_key=key(DAY, model),
            resources=build_resources(settings_used) if settings_used else resources,
            instance=instance,
            raise_on_error=False,
        )

    return settings, run, instance


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_gold_table_metadata_and_checks(chain) -> None:
    settings, run, _ = chain
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
    assert "| all=all | answer_correctness | 12 |" in regression.metadata["comparison"].value
    assert "answer_correctness (all)" in regression.metadata["regressions"].value
    # the same wrong city on every example: paired differences barely vary, so even 12
    # examples could show a 2% change
    enough = checks(worse)[ENOUGH_EXAMPLES_CHECK]
    assert enough.passed, enough.description
    assert "| answer_correctness | 12 |" in enough.metadata["power"].value
    # a precomputed model has no perplexity (no scorer model): listed, not compared
    assert regression.metadata["compared"].value == [
        m for m in settings.regression_metrics if m != "reference_perplexity"
    ]
    assert regression.metadata["not_compared"].value == ["reference_perplexity"]

    (event,) = worse.asset_materializations_for_node(METRIC_AGGREGATES.name)
    metadata = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
    assert isinstance(metadata["answer_correctness"], float)
    assert metadata["error_rate"] == 0.0
    assert metadata["previous_day"] == "none", "one day only: no change to split"
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


def test_mlflow_run_is_reused_and_the_dashboard_follows(chain) -> None:
    settings, run, instance = chain
    assert run("base").success and run("worse").success
    resources = build_resources(settings)
    logged = [
        materialize(
            [mlflow_eval_runs],
            partition_key=key(DAY, "worse"),
            resources=resources,
            instance=instance,
        )
        for _ in range(2)
    ]
    assert all(r.success for r in logged)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name("capitals"))
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "a re-materialization updates the run"
    (mlflow_run,) = runs
    assert mlflow_run.data.tags["dagster.run_id"] == logged[1].run_id
    assert mlflow_run.data.tags["llm_eval.eval_date"] == DAY
    assert mlflow_run.data.params["generation_config_hash"]
    assert 0 <= mlflow_run.data.metrics["answer_correctness.ci_low"] <= 1
    names = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert "examples.json" in names
    # the eval set is the run's input: a Delta source at the version the aggregates read,
    # logged once however often the partition is logged
    (logged_input,) = mlflow_run.inputs.dataset_inputs
    source = json.loads(logged_input.dataset.source)
    assert logged_input.dataset.source_type == "delta_table"
    assert source["path"] == str(settings.delta_dir / "eval_examples")
    aggregates = DeltaStore(settings.delta_dir).read_arrow(METRIC_AGGREGATES).to_pandas()
    assert source["delta_table_version"] == int(aggregates[Agg.EXAMPLES_VERSION].iloc[0])
    assert logged_input.dataset.name == "capitals"
    assert [t.value for t in logged_input.tags] == ["evaluation"]

    automation = Definitions(assets=[metric_aggregates, eval_dashboard], resources=resources)
    result = evaluate_automation_conditions(defs=automation, instance=instance)
    assert result.get_requested_partitions(AssetKey(DASHBOARD_KEY)) == set()
    assert run("same").success  # new aggregates land
    result = evaluate_automation_conditions(
        defs=automation, instance=instance, cursor=result.cursor
    )
    assert result.get_requested_partitions(AssetKey(DASHBOARD_KEY)) == {None}
    dashboard = materialize([eval_dashboard], resources=resources, instance=instance)
    assert dashboard.success
    page = (settings.dashboard_dir / "index.html").read_text(encoding="utf-8")
    assert all(f'data-model="{m}"' in page for m in ("base", "same", "worse"))


def test_mlflow_down_fails_clearly_and_leaves_delta_intact(chain, monkeypatch) -> None:
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings, run, instance = chain
    assert run("base").success
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    resources = build_resources(settings)
    resources["tracking"] = TrackingResource(
        tracking_uri=f"http://127.0.0.1:{closed}",
        dashboard_dir=str(settings.dashboard_dir),
        retries=1,
        backoff_s=0.01,
    )
    before = DeltaStore(settings.delta_dir).version(METRIC_AGGREGATES)
    result = materialize(
        [mlflow_eval_runs],
        partition_key=key(DAY, "base"),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.user_failure_data.description
    assert f"127.0.0.1:{closed}" in message and "Delta tables are written" in message
    assert DeltaStore(settings.delta_dir).version(METRIC_AGGREGATES) == before


# columns that record how fast or which table version was read, not what was computed
VOLATILE = {Col.LATENCY_MS, Agg.EXAMPLES_VERSION, Agg.GENERATIONS_VERSION, Agg.METRICS_VERSION}


def content_hash(store: DeltaStore, spec) -> tuple[int, str]:
    import hashlib

    table = store.read_arrow(spec)
    table = table.drop_columns([c for c in table.column_names if c in VOLATILE])
    rows = sorted(str(sorted(row.items())) for row in table.to_pylist())
    return table.num_rows, hashlib.sha256("\n".join(rows).encode()).hexdigest()


def test_three_materializations_give_identical_tables_and_one_mlflow_run(chain) -> None:
    settings, run, instance = chain
    resources = build_resources(settings)
    store = DeltaStore(settings.delta_dir)
    tables = (GENERATIONS, EXAMPLE_METRICS, METRIC_AGGREGATES, METRIC_SLICES)
    snapshots = []
    for _ in range(3):
        assert run("base").success
        logged = materialize(
            [mlflow_eval_runs], partition_key=key(DAY, "base"), resources=resources,
            instance=instance,
        )  # fmt: skip
        assert logged.success
        snapshots.append({spec.name: content_hash(store, spec) for spec in tables})
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert snapshots[0][EXAMPLE_METRICS.name][0] == len(ROWS)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name("capitals"))
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_a_regression_metric_that_was_never_computed_fails_the_check(chain) -> None:
    """A resource configured past the settings' validation (e.g. in the launchpad) with a
    metric whose group is off: the check fails loudly instead of passing vacuously."""
    import dataclasses

    settings, run, _ = chain
    assert run("base").success
    off = dataclasses.replace(settings, regression_metrics=("rougeL", "judge_correctness"))
    check = checks(run("same", off))[REGRESSION_CHECK]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert "judge_correctness" in check.description
    assert check.metadata["compared"].value == ["rougeL"]


def test_error_rate_check_warns_below_the_failing_threshold() -> None:
    from llm_eval_pipeline.defs.assets.aggregates import error_rate_check

    warned = error_rate_check(0.10, 0.05)
    assert not warned.passed and warned.severity == AssetCheckSeverity.WARN
    assert "10.0% of the generations failed" in warned.description
    assert error_rate_check(0.05, 0.05).passed


def test_a_model_aggregated_before_its_baseline_is_not_called_free_of_regressions(
    chain,
) -> None:
    _, run, _ = chain
    check = checks(run("worse"))[REGRESSION_CHECK]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description.startswith("not compared: baseline base has no metrics")
    assert run("base").success
    assert not checks(run("worse"))[REGRESSION_CHECK].passed  # now compared: a regression


def test_enough_examples_warns_when_the_day_could_not_show_the_margin(home: Settings) -> None:
    """Noisy paired differences (right on half the examples, at random) over 40 examples:
    the minimum detectable effect exceeds 2% of the baseline's mean."""
    import numpy as np
    import pandas as pd

    from llm_eval_pipeline.core.slices import SliceSpec, metric_slices, slice_members
    from llm_eval_pipeline.defs.assets.slices import enough_examples_check
    from llm_eval_pipeline.stages import SlicedPartition

    ids = [f"e{i}" for i in range(40)]
    examples = pd.DataFrame({"example_id": ids, "task": "qa", "prompt": ids, "metadata": [{}] * 40})
    rng = np.random.default_rng(0)
    baseline = pd.DataFrame({"answer_correctness": rng.uniform(0.4, 0.8, 40)}, index=ids)
    candidate = baseline + rng.normal(0.0, 0.2, size=(40, 1))
    spec = SliceSpec(
        min_slice_size=20, relative_margin=0.02, resamples=500, seed=0, margin_floor=0.01
    )
    table = metric_slices(
        candidate, baseline, slice_members(examples, [], set()), ids, ["answer_correctness"], spec
    )
    metrics = build_resources(home)["metrics"]
    done = SlicedPartition(table, 0, "base")
    check = enough_examples_check(done, metrics)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description.startswith("too few examples to see a regression")
    assert "answer_correctness" in check.description
