"""One leaderboard model: the latest day, the metrics asked for that have data, the best
by each metric's direction."""

import datetime as dt
import math

import pandas as pd

from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.schema import Agg, Col
from llm_eval_pipeline.defs.metadata import leaderboard_markdown

OLD, NEW = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def _rows() -> pd.DataFrame:
    rows = []
    for day, model, metric, mean in [
        (OLD, "a", "rougeL", 0.9),
        (NEW, "a", "rougeL", 0.5), (NEW, "b", "rougeL", 0.6),
        (NEW, "a", "hallucination_index", 0.2), (NEW, "b", "hallucination_index", 0.3),
        (NEW, "a", "output_tokens", 9.0), (NEW, "b", "output_tokens", 12.0),
        (NEW, "b", "tokens_per_s", 40.0),
    ]:  # fmt: skip
        ci = (math.nan, math.nan) if metric == "tokens_per_s" else (mean - 0.1, mean + 0.1)
        rows.append({Col.EVAL_DATE: day, Col.MODEL_ID: model, Agg.METRIC: metric,
                     Agg.MEAN: mean, Agg.CI_LOW: ci[0], Agg.CI_HIGH: ci[1]})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_latest_day_the_asked_metrics_and_the_best_by_direction() -> None:
    board = Leaderboard.of(
        _rows(), ["judge_correctness", "rougeL", "hallucination_index", "output_tokens",
                  "tokens_per_s"], baseline="a",
    )  # fmt: skip
    assert board.day == NEW and board.models == ("a", "b")
    assert board.metrics == ("rougeL", "hallucination_index", "output_tokens", "tokens_per_s")
    assert board.entry("b", "rougeL").best and not board.entry("a", "rougeL").best
    assert board.entry("a", "hallucination_index").best  # lower is better
    assert not board.entry("a", "output_tokens").best and not board.entry("b", "output_tokens").best
    assert board.entry("a", "tokens_per_s") is None
    assert not board.entry("b", "tokens_per_s").has_interval
    assert board.label("a") == "a (baseline)"


def test_the_markdown_rendering() -> None:
    text = leaderboard_markdown(Leaderboard.of(_rows(), ["rougeL", "tokens_per_s"], "a"))
    assert text.splitlines() == [
        "| model | rougeL | tokens_per_s |",
        "| --- | --- | --- |",
        "| a (baseline) | 0.500 [0.400, 0.600] |  |",
        "| b | **0.600** [0.500, 0.700] | 40.000 |",
    ]


def test_no_rows_no_board() -> None:
    board = Leaderboard.of(_rows().iloc[0:0], ["rougeL"])
    assert board.models == () and board.day is None
