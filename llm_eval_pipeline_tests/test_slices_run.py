"""`llm-eval run` with `slice_by` writes metric_slices: a candidate right on one source and
wrong on the other regresses on that source only."""

import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

from llm_eval_pipeline.cli.run import latest_day
from llm_eval_pipeline.core.schema import METRIC_SLICES, Agg, Col, Slc
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline_tests.conftest import write_jsonl
from llm_eval_pipeline_tests.processes import environment, llm_eval

PER_SOURCE = 25


@pytest.mark.e2e
def test_a_regression_on_one_source_is_found_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rows = []
    for source in ("alpha", "beta"):
        for i in range(PER_SOURCE):
            answer = f"{source} answer {i}"
            rows.append({
                "prompt": f"Question {i} about {source}?", "references": [answer],
                "metadata": {"source": source}, "right": answer,
                "mixed": answer if source == "alpha" else f"something else {i}",
            })  # fmt: skip
    data = write_jsonl(home / "data" / "sources.jsonl", rows)
    (home / "config.yaml").write_text("slice_by: [source]\nmetric_groups: [rouge, correctness]\n")
    env = environment(home)
    llm_eval(env, "models", "add", "base", "--backend", "precomputed", "--column", "right",
             "--baseline")  # fmt: skip
    llm_eval(env, "models", "add", "cand", "--backend", "precomputed", "--column", "mixed")
    out = llm_eval(env, "run", "--dataset", str(data), "--end", str(latest_day()))
    # the run's summary answers "where": the regressed slice, not the other one
    assert "Regressions against the baseline" in out and "source=beta: rougeL" in out
    assert "source=alpha" not in out

    table = DeltaStore(home / "delta").read_arrow(METRIC_SLICES).to_pandas()
    cand = table[(table[Col.MODEL_ID] == "cand") & (table[Agg.METRIC] == "exact_match")]
    by_source = cand[cand[Slc.KEY] == "source"].set_index(Slc.VALUE)
    assert by_source.loc["alpha", Agg.MEAN] == 1.0
    assert by_source.loc["alpha", Slc.VERDICT] == "no_change"
    assert by_source.loc["beta", Agg.MEAN] == 0.0
    assert by_source.loc["beta", Slc.VERDICT] == "regression"
    assert by_source.loc["beta", Slc.Q_VALUE] <= 0.05
    everything = cand[cand[Slc.KEY] == "all"].iloc[0]
    assert everything[Agg.COUNT] == 2 * PER_SOURCE and everything[Slc.DIFF] == -0.5
    base = table[table[Col.MODEL_ID] == "base"]
    assert base[Slc.VERDICT].isna().all() and base[Slc.DIFF].isna().all()
    assert set(table[Slc.KEY]) == {"all", "source", "prompt_length", "recurring"}

    instance = DagsterInstance.from_config(str(home / "dagster_home"))
    records = instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    checked = [e for e in evaluations if e.check_name == "no_regression_vs_baseline"]
    # the baseline's passes ("this is the baseline"); the candidate's fails, naming beta
    (regression,) = [e for e in checked if not e.passed]
    assert len(checked) == 2
    assert not regression.passed
    assert "source=beta (rougeL, answer_correctness)" in regression.description
    assert "alpha" not in regression.description

    # MLflow: the slice table, the slices that changed as metrics, the regressions as a tag
    from mlflow import MlflowClient

    from llm_eval_pipeline.settings import Settings
    from llm_eval_pipeline.tracking.mlflow_runs import experiment_name

    settings = Settings.load(env=env)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name("sources"))
    runs = {
        r.data.tags["llm_eval.model_id"]: r
        for r in client.search_runs([experiment.experiment_id], "tags.llm_eval.kind = 'eval'")
    }
    cand, base_run = runs["cand"], runs["base"]
    assert "exact_match (source=beta)" in cand.data.tags["llm_eval.regressed_slices"]
    assert "source=alpha" not in cand.data.tags["llm_eval.regressed_slices"]
    assert base_run.data.tags["llm_eval.regressed_slices"] == "none"
    assert cand.data.metrics["slice/source/beta/exact_match"] == 0.0
    assert cand.data.metrics["slice/source/beta/exact_match.diff"] == -1.0
    assert "slice/source/alpha/exact_match" not in cand.data.metrics, "no_change: not logged"
    # as MLflow's load_table finds it (that searches through the global tracking URI,
    # which a test must not set: MLflow exports it to every later subprocess)
    assert {"path": "slices.json", "type": "table"} in json.loads(
        cand.data.tags["mlflow.loggedArtifacts"]
    )
    path = client.download_artifacts(cand.info.run_id, "slices.json", str(tmp_path))
    logged = pd.read_json(path, orient="split")
    assert len(logged) == int((table[Col.MODEL_ID] == "cand").sum())
    assert {"slice_key", "slice_value", "verdict", "q_value"} <= set(logged.columns)
