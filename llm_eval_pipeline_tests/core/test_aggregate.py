"""Aggregates against a direct pandas computation, and the bootstrap's coverage (the
paired comparison behind the regression checks is tested with the slices)."""

import math

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.aggregate import (
    aggregate_partition,
    bootstrap_ci,
    out_of_range,
)
from llm_eval_pipeline.core.schema import Agg, Col


def partition(seed: int = 0, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"e{i}" for i in range(n)]
    metrics = pd.DataFrame(
        {
            Col.EXAMPLE_ID: ids,
            "rougeL": rng.uniform(0, 1, n),
            "reference_perplexity": rng.uniform(5, 50, n),
            "exact_match": np.where(np.arange(n) % 4 == 0, np.nan, rng.integers(0, 2, n)),
        }
    )
    failed = np.arange(n) % 10 == 0
    generations = pd.DataFrame(
        {
            Col.EXAMPLE_ID: ids,
            Col.ERROR: np.where(failed, "boom", None),
            Col.LATENCY_MS: np.where(failed, 0.0, rng.uniform(10, 100, n)),
            Col.OUTPUT_TOKENS: pd.array(np.where(failed, None, rng.integers(1, 30, n)), "Int64"),
        }
    )
    return metrics, generations


def test_aggregates_equal_a_direct_pandas_computation() -> None:
    metrics, generations = partition()
    table = aggregate_partition(metrics, generations, resamples=200, seed=1).set_index(Agg.METRIC)
    for name in ("rougeL", "reference_perplexity", "exact_match"):
        column = metrics[name].dropna()
        row = table.loc[name]
        scale = np.log(column) if name == "reference_perplexity" else column
        mean = np.exp(scale.mean()) if name == "reference_perplexity" else scale.mean()
        assert row[Agg.COUNT] == len(column)
        assert row[Agg.MEAN] == pytest.approx(mean)
        assert row[Agg.STD] == pytest.approx(scale.std())
        assert row[Agg.P50] == pytest.approx(column.quantile(0.5))
        assert row[Agg.P90] == pytest.approx(column.quantile(0.9))
        assert row[Agg.CI_LOW] < row[Agg.MEAN] < row[Agg.CI_HIGH]
    ok = generations[generations[Col.ERROR].isna()]
    assert table.loc["error_rate", Agg.MEAN] == pytest.approx(0.1)
    assert table.loc["latency_ms", Agg.COUNT] == len(ok)
    assert table.loc["tokens_per_s", Agg.MEAN] == pytest.approx(
        ok[Col.OUTPUT_TOKENS].sum() / ok[Col.LATENCY_MS].sum() * 1000
    )
    assert math.isnan(table.loc["tokens_per_s", Agg.CI_LOW])
    assert set(table[Agg.ROWS]) == {40}
    assert "rouge1" not in table.index, "a metric with no value has no row"


def test_perplexity_is_aggregated_by_its_geometric_mean() -> None:
    metrics, generations = partition()
    metrics["reference_perplexity"] = [10.0] * 39 + [1e9]  # one unlikely reference
    row = aggregate_partition(metrics, generations, 200).set_index(Agg.METRIC)
    row = row.loc["reference_perplexity"]
    assert row[Agg.MEAN] == pytest.approx(np.exp((39 * np.log(10) + np.log(1e9)) / 40))
    assert row[Agg.MEAN] < 20 and row[Agg.CI_LOW] <= row[Agg.MEAN] <= row[Agg.CI_HIGH]


def test_aggregates_are_deterministic_under_the_seed() -> None:
    metrics, generations = partition()
    first = aggregate_partition(metrics, generations, resamples=100, seed=7)
    pd.testing.assert_frame_equal(first, aggregate_partition(metrics, generations, 100, 7))


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    values = np.linspace(0, 1, 101)
    low, high = bootstrap_ci(values, resamples=500, seed=3)
    assert (low, high) == bootstrap_ci(values, resamples=500, seed=3)
    assert low < values.mean() < high
    assert all(math.isnan(v) for v in bootstrap_ci([float("nan")]))


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    trials = 300
    covered = 0
    for trial in range(trials):
        sample = rng.exponential(scale=2.0, size=60)  # skewed, true mean 2.0
        low, high = bootstrap_ci(sample, resamples=400, seed=trial)
        covered += low <= 2.0 <= high
    assert 0.88 <= covered / trials <= 0.99


def test_out_of_range_values_are_counted_per_metric() -> None:
    frame = pd.DataFrame(
        {
            "rougeL": [0.0, 1.0, 1.2, np.nan],
            "semantic_similarity": [-0.5, 1.0, 0.2, 0.1],
            "reference_perplexity": [0.5, 3.0, np.nan, 1.0],
        }
    )
    assert out_of_range(frame) == {"rougeL": 1, "reference_perplexity": 1}


@pytest.mark.parametrize(
    ("metric", "low", "high", "margin", "expected"),
    [
        ("rougeL", -0.001, 0.001, 0.01, "no_change"),
        ("rougeL", 0.0, 0.0, 0.0, "no_change"),
        ("rougeL", -0.05, -0.02, 0.01, "regression"),
        ("rougeL", 0.02, 0.05, 0.01, "improvement"),
        ("rougeL", -0.05, 0.005, 0.01, "inconclusive"),
        ("hallucination_index", 0.02, 0.05, 0.01, "regression"),
        ("hallucination_index", -0.05, -0.02, 0.01, "improvement"),
        ("output_tokens", 3.0, 5.0, 1.0, "inconclusive"),
        ("rougeL", math.nan, math.nan, 0.01, "inconclusive"),
    ],
)
def test_verdict_comes_from_the_interval_and_the_margin(
    metric: str, low: float, high: float, margin: float, expected: str
) -> None:
    from llm_eval_pipeline.core.aggregate import verdict

    assert verdict(metric, low, high, margin) == expected


def test_cost_and_latency_percentiles_of_a_partition() -> None:
    from llm_eval_pipeline.core.cost import Prices

    metrics, generations = partition()
    generations = generations.assign(
        prompt_tokens=100, output_tokens=20, latency_ms=np.arange(len(generations), dtype=float)
    )
    generations.loc[0, "prompt_tokens"] = None  # unknown half: counted as 0
    metrics = metrics.assign(judge_prompt_tokens=50.0, judge_output_tokens=1.0)
    prices = Prices(prompt_per_1k=0.5, output_per_1k=2.0)
    table = aggregate_partition(metrics, generations, 50, 0, prices, Prices(1.0, 1.0)).set_index(
        Agg.METRIC
    )
    n = len(generations)
    expected = ((n - 1) * 100 * 0.5 + n * 20 * 2.0) / 1000
    assert table.loc["cost_usd", Agg.MEAN] == pytest.approx(expected)
    assert table.loc["cost_usd", Agg.COUNT] == n
    assert table.loc["judge_cost_usd", Agg.MEAN] == pytest.approx(len(metrics) * 51 / 1000)
    ok = generations[generations[Col.ERROR].isna()]["latency_ms"]
    assert table.loc["latency_ms", Agg.P95] == pytest.approx(np.quantile(ok, 0.95))
    assert table.loc["prompt_tokens", Agg.MEAN] == pytest.approx(100)
    free = aggregate_partition(metrics, generations, 50, 0).set_index(Agg.METRIC)
    assert "cost_usd" not in free.index and "judge_cost_usd" not in free.index
