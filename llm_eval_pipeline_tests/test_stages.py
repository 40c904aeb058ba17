"""The stage functions the assets wrap, called directly (as benchmarks/chain.py does):
the whole chain runs without Dagster, and a stage that cannot complete says why."""

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from llm_eval_pipeline import stages
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.models import parse_spec
from llm_eval_pipeline.core.schema import EXAMPLE_METRICS, GENERATIONS, Agg, Col
from llm_eval_pipeline.core.slices import SLICE_COLUMNS, SliceSpec, metric_slices, slice_members
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline_tests.conftest import write_jsonl

DAY = dt.date(2026, 11, 20)


def test_the_chain_without_dagster(
    home: Settings, tmp_path: Path, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"prompt": f"Capital {i}?", "references": [f"City {i}"], "answer": f"City {i}",
             "context": f"The capital is City {i}."} for i in range(6)]  # fmt: skip
    rows.append({"prompt": "", "references": ["x"]})  # quarantined: empty prompt
    source = write_jsonl(tmp_path / "data" / "d.jsonl", rows)
    store = DeltaStore(home.delta_dir)
    spec = parse_spec({"name": "logged", "backend": "precomputed", "options": {"column": "answer"}})
    config = MetricConfig(groups=("rouge", "correctness"))

    ingested = stages.ingest_day(
        store, spark, DAY, static_path=source, incoming=home.incoming,
        allowed_roots=[source.parent], dataset_name="d", max_field_chars=1000,
        default_task="qa",
    )  # fmt: skip
    assert (ingested.rows_in, ingested.stored_valid, ingested.stored_quarantined) == (
        7,
        6,
        1,
    )
    assert ingested.balanced
    generated = stages.generate_partition(store, spark, spec, DAY, max_error_rate=0.0)
    assert (generated.rows, generated.errors, generated.error_rate) == (6, 0, 0.0)
    assert generated.sample.num_rows == 6
    scored = stages.score_partition(store, spark, spec, config, DAY)
    assert scored.rows == 6 and scored.means["exact_match"] == 1.0
    assert scored.nulls["exact_match"] == 0 and scored.nulls["judge_correctness"] == 6
    aggregated = stages.aggregate_day_model(store, DAY, "logged", resamples=50, seed=0)
    assert aggregated.means["exact_match"] == 1.0

    # the slices stream the rows and match them by key; on the same rows they equal the
    # in-memory computation of core.slices (up to float32 sums)
    spec_ = SliceSpec(
        min_slice_size=2, relative_margin=0.02, resamples=50, seed=0, margin_floor=0.01
    )
    sliced = stages.slice_day_model(
        store, DAY, "logged", baseline="logged", slice_by=["task"], min_slice_size=2,
        relative_margin=0.02, resamples=50, seed=0, margin_floor=0.01,
    )  # fmt: skip
    examples = stages.day_examples(store, DAY)
    own = store.read_arrow(EXAMPLE_METRICS, {Col.EVAL_DATE: DAY, Col.MODEL_ID: "logged"})
    own = own.to_pandas().set_index(Col.EXAMPLE_ID)
    names = list(dict.fromkeys(sliced.table[Agg.METRIC]))
    members = slice_members(examples, ["task"], set())
    expected = metric_slices(own, own, members, list(examples[Col.EXAMPLE_ID]), names, spec_)
    pd.testing.assert_frame_equal(
        sliced.table[list(SLICE_COLUMNS)], expected, check_exact=False, rtol=1e-6
    )
    assert sliced.worst is not None and len(sliced.worst("exact_match", 3)) == 3
    assert set(aggregated.table[Agg.METRIC]) >= {"rougeL", "answer_correctness", "error_rate"}
    first = stages.log_day_model(store, spec, config, DAY, tracking_uri=home.mlflow_tracking_uri,
                                 tags={"origin": "test"})  # fmt: skip
    again = stages.log_day_model(store, spec, config, DAY, tracking_uri=home.mlflow_tracking_uri,
                                 tags={"origin": "test"})  # fmt: skip
    assert first.dataset == "d" and first.run.created and not again.run.created
    assert first.run.run_id == again.run.run_id
    partition = {Col.EVAL_DATE: DAY, Col.MODEL_ID: "logged"}
    assert store.read_arrow(GENERATIONS, partition).num_rows == 6
    assert store.read_arrow(EXAMPLE_METRICS, partition).num_rows == 6

    # a partition larger than MLflow's share logs a seeded sample, the same on a re-run
    ids = sorted(store.read_arrow(EXAMPLE_METRICS, partition).column(Col.EXAMPLE_ID).to_pylist())
    sample, total = stages.sampled_ids([ids], 4, f"{DAY}|logged")
    assert sample is not None and len(sample) == 4 and set(sample) <= set(ids) and total == 6
    in_batches = [ids[5:], ids[2:5][::-1], ids[:2]]
    assert stages.sampled_ids(in_batches, 4, f"{DAY}|logged") == (sample, 6)
    assert stages.sampled_ids([ids], 4, "another day") != (sample, 6)
    assert stages.sampled_ids([ids], 6, "any") == (None, 6)
    table = stages.example_table(store, DAY, "logged", ids=sample)
    assert sorted(table[Col.EXAMPLE_ID]) == sample and table[Col.PROMPT].notna().all()
    monkeypatch.setattr(stages, "MLFLOW_EXAMPLE_ROWS", 4)
    sampled = stages.log_day_model(store, spec, config, DAY, tracking_uri=home.mlflow_tracking_uri,
                                   tags={"origin": "test"})  # fmt: skip
    run = MlflowClient(home.mlflow_tracking_uri).get_run(sampled.run.run_id)
    assert run.data.tags["llm_eval.examples_logged"] == "4 of 6 (sample)"
    assert sampled.run.run_id == first.run.run_id

    # the next day adds two examples the model gets wrong: the day's exact match falls
    # by 0.25, all of it from the data (the six recurring examples are still right)
    following = DAY + dt.timedelta(days=1)
    wrong = [{"prompt": f"Capital {i}?", "references": [f"City {i}"], "answer": "Nowhere"}
             for i in (10, 11)]  # fmt: skip
    write_jsonl(home.incoming / str(following) / "more.jsonl", wrong)
    stages.ingest_day(
        store, spark, following, static_path=source, incoming=home.incoming,
        allowed_roots=[source.parent, home.incoming], dataset_name="d", max_field_chars=1000,
        default_task="qa",
    )  # fmt: skip
    stages.generate_partition(store, spark, spec, following, max_error_rate=0.0)
    stages.score_partition(store, spark, spec, config, following)
    before, changes = stages.change_since_previous_day(
        store, following, "logged", ["exact_match", "not_a_metric"]
    )
    assert before == DAY and set(changes) == {"exact_match"}
    split = changes["exact_match"]
    assert (split.change, split.recurring, split.data, split.kept) == (-0.25, 0.0, -0.25, 6)
    drifted = stages.drift_day(store, following, slice_by=["task"], embed=None, seed=0)
    assert drifted.previous == DAY and drifted.ids == {"added": 2, "removed": 0, "kept": 6}
    assert {t.test for t in drifted.tests} >= {"task_mix", "prompt_length_ks"}
    first_day = stages.drift_day(store, DAY, slice_by=["task"], embed=None, seed=0)
    assert first_day.previous is None and first_day.tests == []


def test_stages_that_cannot_complete_say_why(home: Settings, spark) -> None:
    store = DeltaStore(home.delta_dir)
    with pytest.raises(stages.StageError, match="no example_metrics for ghost on 2026-11-20"):
        stages.aggregate_day_model(store, DAY, "ghost", resamples=10, seed=0)
