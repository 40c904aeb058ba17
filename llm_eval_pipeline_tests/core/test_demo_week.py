"""The demo week's plan and files (pure: no Spark, no Dagster)."""

import datetime as dt
import json
from pathlib import Path

import pytest

from llm_eval_pipeline.core.dataset import ingest
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import MAX_NEW_TOKENS
from llm_eval_pipeline.demo.week import (
    BATCHES,
    BF16_MODEL,
    CUT_MAX_NEW_TOKENS,
    DEMO_MARGINS,
    WeekPlan,
    bad_rows,
    model_args,
    redeploy_args,
    split_dataset,
    write_demo_config,
    write_week_files,
)
from llm_eval_pipeline.settings import Settings

WEEK = [dt.date(2026, 11, 25) + dt.timedelta(days=i) for i in range(7)]


def test_the_week_brings_batches_then_a_model_then_a_regression() -> None:
    plan = WeekPlan.of(WEEK)
    assert plan.drops == {BATCHES[0]: WEEK[2], BATCHES[1]: WEEK[4]}
    assert plan.join_day == WEEK[3] and plan.regression_day == WEEK[6]
    with pytest.raises(ValueError, match="at least 3 days"):
        WeekPlan.of(WEEK[:2])


def test_the_split_keeps_every_shipped_row_once() -> None:
    base, batches = split_dataset(Path(demo_dataset_path()))
    shipped = Path(demo_dataset_path()).read_text(encoding="utf-8").splitlines()
    everything = base + [line for rows in batches.values() for line in rows]
    assert sorted(everything) == sorted(line for line in shipped if line.strip())
    assert all(len(rows) >= 10 for rows in batches.values())


def test_drops_stay_on_later_days_and_bad_rows_only_on_their_first(tmp_path: Path) -> None:
    plan = WeekPlan.of(WEEK)
    incoming = tmp_path / "incoming"
    stale = incoming / WEEK[0].isoformat() / f"{BATCHES[0]}.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by an earlier demo\n")
    base = write_week_files(Path(demo_dataset_path()), tmp_path / "demo", incoming, plan)
    assert not stale.exists()
    _, batches = split_dataset(Path(demo_dataset_path()))
    for batch, first in plan.drops.items():
        for day in WEEK:
            path = incoming / day.isoformat() / f"{batch}.jsonl"
            if day < first:
                assert not path.exists()
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            extra = len(bad_rows(batch)) if day == first else 0
            assert len(lines) == len(batches[batch]) + extra
    # the validator quarantines exactly the bad rows
    first_drop = incoming / plan.drops[BATCHES[0]].isoformat() / f"{BATCHES[0]}.jsonl"
    result = ingest([first_drop], plan.drops[BATCHES[0]], dataset_name="demo_eval")
    assert result.balanced and result.quarantined.num_rows == len(bad_rows(BATCHES[0])) == 2
    assert {json.loads(line)["id"] for line in base.read_text().splitlines()}.isdisjoint(
        {json.loads(line)["id"] for rows in batches.values() for line in rows}
    )


def test_the_redeployment_only_cuts_max_new_tokens(tmp_path: Path) -> None:
    before, after = model_args(tmp_path)[BF16_MODEL], redeploy_args(tmp_path)
    assert before[before.index("--max-new-tokens") + 1] == str(MAX_NEW_TOKENS)
    assert after[after.index("--max-new-tokens") + 1] == str(CUT_MAX_NEW_TOKENS)
    assert after[-1] == "--replace"
    assert [a for a in after if a not in (str(CUT_MAX_NEW_TOKENS), "--replace")] == [
        a for a in before if a != str(MAX_NEW_TOKENS)
    ]


def test_the_demo_margins_go_into_a_new_config_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert write_demo_config(home / "config.yaml")
    settings = Settings.load(env={"LLM_EVAL_HOME": str(home)})
    assert {k: getattr(settings, k) for k in DEMO_MARGINS} == DEMO_MARGINS
    (home / "config.yaml").write_text("regression_margin: 0.2\n")
    assert not write_demo_config(home / "config.yaml")
    assert (home / "config.yaml").read_text() == "regression_margin: 0.2\n"
