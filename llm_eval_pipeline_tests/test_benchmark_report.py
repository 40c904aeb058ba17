"""RESULTS.md is written from what a run measured: a missed goal is explained by the
benchmark's own figures, not by text fixed in the report writer (nothing is timed here)."""

from benchmarks.common import Result, Timing
from benchmarks.run_all import to_markdown


def _result(met: bool, shortfall: str | None) -> Result:
    return Result("B9", "a hot path", "theirs", "ours", Timing([2.0]), Timing([1.0]), 2.0,
                  ">= 5x", met, ["note"], shortfall)  # fmt: skip


def test_a_missed_goal_is_explained_by_its_own_run() -> None:
    text = to_markdown([_result(False, "measured 1.23 s of 4.56 s")], 60.0, 1)
    assert "## Goals not met" in text
    assert "- **B9** a hot path: measured 1.23 s of 4.56 s" in text


def test_met_goals_have_no_shortfall_section() -> None:
    assert "Goals not met" not in to_markdown([_result(True, "unused")], 60.0, 1)


def test_the_report_writer_holds_no_figures_of_its_own() -> None:
    import inspect

    import benchmarks.run_all as run_all

    source = inspect.getsource(run_all)
    assert "1.2 s of 3.3 s" not in source and "3.2 tokens" not in source
    assert not hasattr(run_all, "SHORTFALLS")


def test_a_partial_run_replaces_only_its_own_rows() -> None:
    from benchmarks.run_all import LATER, merge_later

    full = to_markdown([_result(True, None)], 60.0, 1)
    once = merge_later(full, [Result("B12", "scoring", "before", "after", None, None, 1.4,
                                     "<= 1.5x", True, ["first"])])  # fmt: skip
    assert once.startswith(full.rstrip("\n")) and once.count(LATER) == 1
    twice = merge_later(once, [Result("B12", "scoring", "before", "after", None, None, 1.2,
                                      "<= 1.5x", True, ["second"])])  # fmt: skip
    assert twice.count("<!-- B12 -->") == 1 and "second" in twice and "first" not in twice
    assert "| B12 | scoring | before |  |  | 1.20× | <= 1.5x | yes |" in twice
