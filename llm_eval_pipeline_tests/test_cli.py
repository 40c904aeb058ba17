"""The CLI, in this process, against the run's LLM_EVAL_HOME and its Dagster instance."""

import contextlib
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter
from mlflow import MlflowClient

from llm_eval_pipeline.cli import main
from llm_eval_pipeline.cli.run import latest_day
from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    GENERATIONS,
    METRIC_AGGREGATES,
    QUARANTINED_EXAMPLES,
    Col,
)
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.demo.week import BATCH64_MODEL, BF16_MODEL, CUT_MAX_NEW_TOKENS, WeekPlan
from llm_eval_pipeline.settings import get_settings
from llm_eval_pipeline.tracking.mlflow_runs import experiment_name
from llm_eval_pipeline_tests.conftest import write_jsonl


class _Kept(io.StringIO):
    """A capture buffer that survives libraries closing the stream they were handed."""

    def close(self) -> None:
        pass


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in this process; its exit code, stdout and stderr."""
    out, err = _Kept(), _Kept()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def cli_process(argv: list[str], timeout: int = 600) -> tuple[int, str, str]:
    """Run the installed ``llm-eval`` console script in its own process, as a user would.
    Used for the commands that execute Dagster runs: Dagster's per-run log capture swaps
    the process's standard streams, which must not be pytest's."""
    exe = Path(sys.executable).with_name("llm-eval")
    done = subprocess.run(
        [str(exe), *argv], capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
    return done.returncode, done.stdout, done.stderr


def per_day(table) -> dict[dt.date, int]:
    rows = table.group_by(Col.EVAL_DATE).aggregate([([], "count_all")]).to_pylist()
    return {r[Col.EVAL_DATE]: r["count_all"] for r in rows}


def test_demo_week_grows_the_set_backfills_a_new_model_and_plants_a_regression(
    spark, tiny_models
) -> None:
    settings = get_settings()
    # the builder reuses models it finds; these were built with a shorter training
    shutil.copytree(tiny_models, settings.models_dir, dirs_exist_ok=True)
    code, out, err = cli(["demo", "--days", "3"])
    assert code == 0, err
    store = DeltaStore(settings.delta_dir)
    days = [latest_day() - dt.timedelta(days=i) for i in (2, 1, 0)]
    plan = WeekPlan.of(days)
    assert plan.join_day == days[1] and plan.regression_day == days[2]
    # batch_a arrives on day 2 with two bad rows, batch_b on day 3 with one
    counts = per_day(store.read_arrow(EVAL_EXAMPLES))
    assert [counts.get(d) for d in days] == [130, 146, 162]
    quarantined = per_day(store.read_arrow(QUARANTINED_EXAMPLES))
    assert [quarantined.get(d, 0) for d in days] == [0, 2, 1]
    models = (QA_MODEL, BF16_MODEL, BATCH64_MODEL)
    generated = store.read_arrow(GENERATIONS).group_by([Col.EVAL_DATE, Col.MODEL_ID])
    cells = {
        (r[Col.EVAL_DATE], r[Col.MODEL_ID]): r["count_all"]
        for r in generated.aggregate([([], "count_all")]).to_pylist()
    }
    assert cells == {(d, m): counts[d] for d in days for m in models}
    registry = {s.name: s for s in ModelRegistry(settings.models_yaml).load()}
    assert set(models) <= set(registry)
    assert registry[BF16_MODEL].generation.max_new_tokens == CUT_MAX_NEW_TOKENS
    assert (settings.home / "config.yaml").exists()

    instance = DagsterInstance.from_config(str(settings.dagster_home))
    runs = instance.get_runs()
    assert runs[0].job_name == "refresh_dashboard" and all(r.is_success for r in runs)
    # the new model's earlier days came from the new-model sensor's run requests
    backfilled = sorted(
        r.tags["dagster/partition"]
        for r in runs
        if r.tags.get("llm_eval/trigger") == "new_model_sensor"
    )
    assert backfilled == [f"{d}|{BATCH64_MODEL}" for d in days[:2]]
    partition_of_run = {r.run_id: r.tags.get("dagster/partition") for r in runs}
    failed = {
        (partition_of_run[record.event_log_entry.run_id], data.check_name)
        for record in instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        )
        if not (data := record.event_log_entry.dagster_event.event_specific_data).passed
    }
    # every check that did not pass is on the partition of the planted regression
    assert {partition for partition, _ in failed} <= {f"{days[2]}|{BF16_MODEL}"}

    aggregates = store.read_arrow(METRIC_AGGREGATES).to_pandas()
    assert len(aggregates.groupby([Col.EVAL_DATE, Col.MODEL_ID])) == 9
    assert "The demo week:" in out and f"{BATCH64_MODEL} registered" in out
    assert f"Leaderboard for {days[-1]}" in out

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name("demo_eval"))
    eval_runs = client.search_runs([experiment.experiment_id], "tags.`llm_eval.kind` = 'eval'")
    assert len(eval_runs) == 9
    assert {r.data.tags["llm_eval.model_id"] for r in eval_runs} == set(models)
    dashboard = settings.dashboard_dir / "index.html"
    assert dashboard.as_uri() in out
    assert BATCH64_MODEL in dashboard.read_text(encoding="utf-8")


def test_models_add_list_remove() -> None:
    add = ["models", "add", "prod-log", "--backend", "precomputed"]
    code, out, _ = cli([*add, "--column", "logged"])
    assert code == 0 and "Added prod-log" in out
    code, out, _ = cli(["models", "list"])
    assert code == 0 and "prod-log" in out
    code, _, err = cli([*add, "--column", "x"])
    assert code == 1 and "already in" in err
    code, _, err = cli(["models", "add", "m", "--backend", "transformers", "--path", "/no/such"])
    assert code == 1 and "does not exist" in err
    code, _, err = cli(["models", "add", "m", "--backend", "gguf"])
    assert code == 2 and "invalid choice" in err
    code, _, err = cli(["models", "add", "bad name!", "--backend", "precomputed", "--column", "c"])
    assert code == 1 and "not valid" in err
    code, out, _ = cli(["models", "remove", "prod-log"])
    assert code == 0 and "kept" in out
    assert "prod-log" not in [s.name for s in ModelRegistry(get_settings().models_yaml).load()]


def test_run_on_a_users_dataset_for_chosen_models(tmp_path: Path, spark) -> None:
    data = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"prompt": "2+2?", "references": ["4"], "logged": "4"},
            {"prompt": 7, "references": ["x"]},
        ],
    )
    assert (
        cli(["models", "add", "logged-a", "--backend", "precomputed", "--column", "logged"])[0] == 0
    )
    argv = ["run", "--dataset", str(data), "--start", "2026-02-01", "--end", "2026-02-02"]
    code, _, err = cli_process([*argv, "--models", "logged-a"])
    assert code == 0, err[-3000:]
    store = DeltaStore(get_settings().delta_dir)
    feb = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
    assert [per_day(store.read_arrow(EVAL_EXAMPLES))[d] for d in feb] == [1, 1]
    assert [per_day(store.read_arrow(QUARANTINED_EXAMPLES))[d] for d in feb] == [1, 1]
    outputs = store.read_arrow(GENERATIONS, {Col.EVAL_DATE: feb[0], Col.MODEL_ID: "logged-a"})
    assert outputs.column(Col.OUTPUT).to_pylist() == ["4"]
    code, _, err = cli_process([*argv, "--models", "not-registered"])
    assert code == 1 and "not in" in err
    cli(["models", "remove", "logged-a"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--start", "2026-02-03", "--end", "2026-02-01"], "is after --end"),
        (["run", "--end", "2999-01-01"], "is after the latest complete day"),
        (["run", "--start", "2020-01-01", "--end", "2026-01-02"], "before the first partition"),
        (["demo", "--days", "0"], "at least 3"),
        (["run", "--name", "mine"], "--name names the dataset of --dataset"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(argv: list[str], message: str) -> None:
    code, _, err = cli(argv)
    assert code == 1 and message in err


def test_bad_model_name_is_rejected_by_the_parser() -> None:
    code, _, err = cli(["run", "--models", "ok,not ok!"])
    assert code == 2 and "not valid" in err


def test_a_failing_day_exits_1_naming_the_file(tmp_path: Path, spark) -> None:
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"nope")
    code, _, err = cli_process(
        ["run", "--dataset", str(bad), "--end", "2026-03-01", "--models", ""]
    )
    assert code == 1 and f"{bad}: cannot read as parquet" in err, (code, err[-3000:])


def test_score_a_file(tmp_path: Path) -> None:
    import pandas as pd

    source = write_jsonl(
        tmp_path / "preds.jsonl",
        [
            {"prompt": "Capital of France?", "reference": "Paris", "prediction": "Paris"},
            {"prompt": "Capital of Italy?", "references": ["Rome"], "prediction": "Milan"},
            {"prompt": "Largest planet?", "reference": "Jupiter", "prediction": None},
        ],
    )
    out = tmp_path / "scores.csv"
    code, printed, _ = cli(
        ["score", str(source), "--output", str(out), "--metrics", "rouge,correctness"]
    )
    assert code == 0
    assert "Scored 3 rows" in printed and "95% CI" in printed and "exact_match" in printed
    scores = pd.read_csv(out)
    assert list(scores["prediction"].fillna("-")) == ["Paris", "Milan", "-"]
    assert list(scores["exact_match"].fillna(-1)) == [1.0, 0.0, -1]
    assert "hallucination_index" not in scores.columns


def test_score_with_an_nli_model(tmp_path: Path, tiny_nli: Path) -> None:
    import pandas as pd

    source = write_jsonl(
        tmp_path / "preds.jsonl",
        [{"context": "Spiders are arachnids.", "reference": "arachnids", "prediction": "Insects"}],
    )
    out = tmp_path / "scores.parquet"
    args = ["score", str(source), "--output", str(out), "--metrics", "hallucination"]
    code, _, _ = cli([*args, "--nli-model", str(tiny_nli)])
    assert code == 0
    assert 0.0 < pd.read_parquet(out)["nli_contradiction"].iloc[0] < 1.0


def test_score_a_reference_free_file(tmp_path: Path) -> None:
    import json

    import pandas as pd

    context = "The Orla bridge opened in 1931. It was designed by Ines Varga."
    source = write_jsonl(
        tmp_path / "rag.jsonl",
        [
            {"prompt": "Who designed the Orla bridge?", "context": context,
             "prediction": "Ines Varga designed it."},
            {"prompt": "Who designed the Orla bridge?", "context": context,
             "prediction": "It was designed by Tomas Brell in 1950."},
        ],
    )  # fmt: skip
    out = tmp_path / "scores.jsonl"
    code, printed, err = cli(["score", str(source), "--output", str(out)])
    assert code == 0, err
    scores = pd.read_json(out, lines=True)
    faithful, fabricated = scores["hallucination_index"]
    assert faithful < fabricated
    assert scores["rougeL"].isna().all() and scores["answer_correctness"].isna().all()
    notes = [json.loads(n) for n in scores["metric_notes"]]
    assert all(n["rouge"] == n["correctness"] == "no references" for n in notes)


def test_validate_metric_reports_both_settings_beside_the_length_baseline(
    tmp_path: Path,
) -> None:
    context = "The Orla bridge opened in 1931. It was designed by Ines Varga."
    question = "Who designed the Orla bridge?"
    rows = [
        {"question": question, "context": context, "reference": "Ines Varga",
         "answer": "Ines Varga", "label": "faithful"},
        {"question": question, "context": context, "reference": "Ines Varga",
         "answer": "Tomas Brell, in 1950", "label": "fabricated"},
        {"question": "When did the Orla bridge open?", "context": context, "reference": None,
         "answer": "It opened in 1931.", "label": "faithful"},
        {"question": "When did the Orla bridge open?", "context": context, "reference": None,
         "answer": "It opened in 1962.", "label": "fabricated"},
    ]  # fmt: skip
    source = write_jsonl(tmp_path / "labelled.jsonl", rows)
    code, printed, err = cli(["validate-metric", str(source), "--label-column", "label"])
    assert code == 0, err
    assert "4 rows, 2 labelled 'fabricated'" in printed
    for line in ("with references hallucination_probability", "reference-free  hallucination_"):
        assert line in printed
    assert "answer length (baseline)" in printed and "precision" in printed
    wrong = cli(["validate-metric", str(source), "--label-column", "verdict"])
    assert wrong[0] == 1 and "no 'verdict' column" in wrong[2]


def test_score_names_a_missing_column(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "answer": "y"}])
    code, _, err = cli(["score", str(source), "--output", str(tmp_path / "o.jsonl")])
    assert code == 1 and "no 'prediction' column" in err and str(source) in err


def test_score_names_text_that_is_not_valid_unicode(tmp_path: Path) -> None:
    source = tmp_path / "cut.jsonl"
    source.write_text(
        '{"prediction": "fine", "reference": "fine"}\n'
        '{"prediction": "a smile \\ud83d", "reference": "a smile"}\n',
        encoding="utf-8",
    )
    code, _, err = cli(["score", str(source), "--output", str(tmp_path / "o.parquet")])
    assert code == 1, err
    assert f"{source} row 2 field 'prediction': holds \\ud83d" in err


def test_run_end_defaults_to_yesterday_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "(default: yesterday, UTC)" in " ".join(capsys.readouterr().out.split())


def test_a_bug_is_reported_as_one_and_its_traceback_shown_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llm_eval_pipeline.cli as cli_module

    def broken(*_: object) -> int:
        raise KeyError("an internal slip")

    monkeypatch.setattr(cli_module, "show_status", broken)
    code, _, err = cli(["status"])
    assert code == 1 and "internal error: KeyError: 'an internal slip'" in err
    assert "--debug" in err and "Traceback" not in err
    code, _, err = cli(["--debug", "status"])
    assert code == 1 and "Traceback (most recent call last)" in err and "broken" in err
    monkeypatch.setenv("LLM_EVAL_DEBUG", "1")
    code, _, err = cli(["status"])
    assert "Traceback (most recent call last)" in err


def test_a_user_error_is_one_line(tmp_path: Path) -> None:
    code, _, err = cli(["score", str(tmp_path / "none.jsonl"), "--output", "o.csv"])
    assert code == 1 and err.strip() == f"llm-eval: {tmp_path / 'none.jsonl'}: file not found"


def test_score_reports_a_broken_registry_as_such(tmp_path: Path) -> None:
    settings = get_settings()
    source = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "a", "reference": "a"}])
    backup = settings.models_yaml.read_text() if settings.models_yaml.exists() else None
    settings.models_yaml.parent.mkdir(parents=True, exist_ok=True)
    settings.models_yaml.write_text("models: [unclosed\n")
    try:
        argv = ["score", str(source), "--output", str(tmp_path / "o.csv"), "--model", "tiny-qa"]
        code, _, err = cli(argv)
    finally:
        if backup is None:
            settings.models_yaml.unlink()
        else:
            settings.models_yaml.write_text(backup)
    assert code == 1 and f"{settings.models_yaml}: not valid YAML" in err
    assert "neither a registered model nor a path" not in err


def test_every_command_and_the_ui_servers_run_without_mlflow_telemetry() -> None:
    from llm_eval_pipeline.cli.ui import ui_environment

    assert ui_environment(get_settings())["MLFLOW_DISABLE_TELEMETRY"] == "true"
    cli(["models", "list"])
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
