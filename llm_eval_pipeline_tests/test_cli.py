"""The CLI, in this process, against the run's LLM_EVAL_HOME and its Dagster instance."""

import datetime as dt
from pathlib import Path

import pytest
from dagster import DagsterInstance

from llm_eval_pipeline.cli import main, today_utc
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import get_settings
from llm_eval_pipeline_tests.conftest import write_jsonl


def per_day(table) -> dict[dt.date, int]:
    rows = table.group_by(Col.EVAL_DATE).aggregate([([], "count_all")]).to_pylist()
    return {r[Col.EVAL_DATE]: r["count_all"] for r in rows}


def test_demo_ingests_three_days_into_delta_and_the_ui_instance(capsys, spark) -> None:
    settings = get_settings()
    assert main(["demo", "--days", "3"]) == 0
    out = capsys.readouterr().out
    store = DeltaStore(settings.delta_dir)
    today = today_utc()
    days = [today - dt.timedelta(days=i) for i in (2, 1, 0)]
    counts = per_day(store.read_arrow(EVAL_EXAMPLES))
    assert {d: counts.get(d) for d in days} == {d: 162 for d in days}
    assert all(per_day(store.read_arrow(QUARANTINED_EXAMPLES)).get(d, 0) == 0 for d in days)
    assert str(store.path(EVAL_EXAMPLES)) in out
    assert f"{days[0]}: 162" in out and "quarantined_examples" in out

    instance = DagsterInstance.from_config(str(settings.dagster_home))
    runs = instance.get_runs()
    assert sorted(r.tags["dagster/partition"] for r in runs[:3]) == [str(d) for d in days]
    assert all(r.is_success for r in runs[:3])


def test_run_on_a_users_dataset_with_models(tmp_path: Path, capsys, spark) -> None:
    data = write_jsonl(
        tmp_path / "mine.jsonl",
        [{"prompt": "2+2?", "references": ["4"]}, {"prompt": 7, "references": ["x"]}],
    )
    code = main(
        [
            "run",
            "--dataset",
            str(data),
            "--start",
            "2026-02-01",
            "--end",
            "2026-02-02",
            "--models",
            "tiny-a,tiny-b",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Registered model partitions: tiny-a, tiny-b" in out
    store = DeltaStore(get_settings().delta_dir)
    feb = [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
    assert [per_day(store.read_arrow(EVAL_EXAMPLES))[d] for d in feb] == [1, 1]
    assert [per_day(store.read_arrow(QUARANTINED_EXAMPLES))[d] for d in feb] == [1, 1]
    instance = DagsterInstance.from_config(str(get_settings().dagster_home))
    assert set(instance.get_dynamic_partitions("models")) >= {"tiny-a", "tiny-b"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--start", "2026-02-03", "--end", "2026-02-01"], "is after --end"),
        (["run", "--end", "2999-01-01"], "is after today"),
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
    assert main(["run", "--dataset", str(bad), "--end", "2026-03-01"]) == 1
    assert f"{bad}: cannot read as parquet" in capsys.readouterr().err
