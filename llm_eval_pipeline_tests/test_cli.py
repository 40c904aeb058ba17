"""The CLI, in this process, against the run's LLM_EVAL_HOME and its Dagster instance."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance

from llm_eval_pipeline.cli import latest_day, main
from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, GENERATIONS, QUARANTINED_EXAMPLES, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo.models import QA_MODEL, RANDOM_MODEL
from llm_eval_pipeline.settings import get_settings
from llm_eval_pipeline_tests.conftest import write_jsonl


def per_day(table) -> dict[dt.date, int]:
    rows = table.group_by(Col.EVAL_DATE).aggregate([([], "count_all")]).to_pylist()
    return {r[Col.EVAL_DATE]: r["count_all"] for r in rows}


def test_demo_ingests_and_generates_three_days_for_both_models(capsys, spark, tiny_models) -> None:
    settings = get_settings()
    # the builder reuses models it finds; these were built with a shorter training
    shutil.copytree(tiny_models, settings.models_dir, dirs_exist_ok=True)
    assert main(["demo", "--days", "3"]) == 0
    out = capsys.readouterr().out
    store = DeltaStore(settings.delta_dir)
    days = [latest_day() - dt.timedelta(days=i) for i in (2, 1, 0)]
    counts = per_day(store.read_arrow(EVAL_EXAMPLES))
    assert {d: counts.get(d) for d in days} == {d: 162 for d in days}
    assert all(per_day(store.read_arrow(QUARANTINED_EXAMPLES)).get(d, 0) == 0 for d in days)
    generated = store.read_arrow(GENERATIONS).group_by([Col.EVAL_DATE, Col.MODEL_ID])
    cells = {
        (r[Col.EVAL_DATE], r[Col.MODEL_ID]): r["count_all"]
        for r in generated.aggregate([([], "count_all")]).to_pylist()
    }
    assert cells == {(d, m): 162 for d in days for m in (RANDOM_MODEL, QA_MODEL)}
    assert str(store.path(GENERATIONS)) in out and "tiny-qa: 162 rows" in out
    assert [s.name for s in ModelRegistry(settings.models_yaml).load()] == [RANDOM_MODEL, QA_MODEL]

    instance = DagsterInstance.from_config(str(settings.dagster_home))
    runs = instance.get_runs()
    partitions = sorted(r.tags["dagster/partition"] for r in runs[:9])
    assert partitions == sorted(
        [str(d) for d in days] + [f"{d}|{m}" for d in days for m in (RANDOM_MODEL, QA_MODEL)]
    )
    assert all(r.is_success for r in runs[:9])
    assert set(instance.get_dynamic_partitions("models")) >= {RANDOM_MODEL, QA_MODEL}


def test_models_add_list_remove(capsys) -> None:
    assert (
        main(["models", "add", "prod-log", "--backend", "precomputed", "--column", "logged"]) == 0
    )
    assert "Added prod-log" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    assert "prod-log" in capsys.readouterr().out
    assert main(["models", "add", "prod-log", "--backend", "precomputed", "--column", "x"]) == 1
    assert "already in" in capsys.readouterr().err
    assert main(["models", "add", "m", "--backend", "transformers", "--path", "/no/such"]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["models", "add", "m", "--backend", "gguf"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["models", "add", "bad name!", "--backend", "precomputed", "--column", "c"]) == 1
    assert "not valid" in capsys.readouterr().err
    assert main(["models", "remove", "prod-log"]) == 0
    assert "kept" in capsys.readouterr().out
    assert "prod-log" not in [s.name for s in ModelRegistry(get_settings().models_yaml).load()]


def test_run_on_a_users_dataset_for_chosen_models(tmp_path: Path, capsys, spark) -> None:
    data = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"prompt": "2+2?", "references": ["4"], "logged": "4"},
            {"prompt": 7, "references": ["x"]},
        ],
    )
    assert (
        main(["models", "add", "logged-a", "--backend", "precomputed", "--column", "logged"]) == 0
    )
    argv = ["run", "--dataset", str(data), "--start", "2026-02-01", "--end", "2026-02-02"]
    assert main([*argv, "--models", "logged-a"]) == 0
    store = DeltaStore(get_settings().delta_dir)
    feb = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
    assert [per_day(store.read_arrow(EVAL_EXAMPLES))[d] for d in feb] == [1, 1]
    assert [per_day(store.read_arrow(QUARANTINED_EXAMPLES))[d] for d in feb] == [1, 1]
    outputs = store.read_arrow(GENERATIONS, {Col.EVAL_DATE: feb[0], Col.MODEL_ID: "logged-a"})
    assert outputs.column(Col.OUTPUT).to_pylist() == ["4"]
    assert main([*argv, "--models", "not-registered"]) == 1
    assert "not in" in capsys.readouterr().err
    main(["models", "remove", "logged-a"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--start", "2026-02-03", "--end", "2026-02-01"], "is after --end"),
        (["run", "--end", "2999-01-01"], "is after the latest complete day"),
        (["run", "--start", "2020-01-01", "--end", "2026-01-02"], "before the first partition"),
        (["demo", "--days", "0"], "at least 1"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_bad_model_name_is_rejected_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--models", "ok,not ok!"])
    assert "not valid" in capsys.readouterr().err


def test_a_failing_day_exits_1_naming_the_file(tmp_path: Path, capsys, spark) -> None:
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"nope")
    assert main(["run", "--dataset", str(bad), "--end", "2026-03-01", "--models", ""]) == 1
    assert f"{bad}: cannot read as parquet" in capsys.readouterr().err
