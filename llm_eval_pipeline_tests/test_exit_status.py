"""An `llm-eval` command's exit status is its result. Native thread pools (delta-rs,
Arrow) can abort the interpreter's teardown after the work is done (exit 134, "terminate
called without an active exception"; seen here in 2 of 60 `status` runs four at a time
before the fix): 50 runs of a Delta-touching command, four at a time, all exit 0."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, Col
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline_tests.processes import environment, finish, start_llm_eval

RUNS, AT_ONCE = 50, 4
DAY = dt.date(2026, 11, 1)


def _home_with_a_table(home: Path) -> Path:
    rows = pd.DataFrame(
        [
            {Col.EXAMPLE_ID: f"e{i}", Col.DATASET: "d", Col.TASK: "qa", Col.PROMPT: f"q{i}?",
             Col.REFERENCES: [f"a{i}"], Col.CONTEXT: None, Col.METADATA: [],
             Col.SOURCE_FILE: "d.jsonl", Col.SOURCE_ROW: i + 1, Col.EVAL_DATE: DAY}
            for i in range(20)
        ]
    )  # fmt: skip
    DeltaStore(home / "delta").write_partition(EVAL_EXAMPLES, rows, {Col.EVAL_DATE: DAY})
    return home


@pytest.mark.e2e
def test_fifty_delta_reading_commands_all_exit_0(tmp_path: Path) -> None:
    env = environment(_home_with_a_table(tmp_path / "home"))

    def once(_: int) -> tuple[int, str]:
        return finish(start_llm_eval(env, "status"))

    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(once, range(RUNS)))
    failed = [(code, output[-300:]) for code, output in results if code != 0]
    assert not failed, f"{len(failed)} of {RUNS} runs failed: {failed[:3]}"
    assert all(f"{DAY}  20 rows" in output for _, output in results)


@pytest.mark.e2e
def test_failures_keep_their_exit_status(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    code, output = finish(start_llm_eval(env, "run", "--start", "1999-01-01"))
    assert code == 1 and "before the first partition" in output
    code, output = finish(start_llm_eval(env, "status", "--days", "many"))
    assert code == 2 and "invalid int value" in output
