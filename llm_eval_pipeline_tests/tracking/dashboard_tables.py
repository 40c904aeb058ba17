"""Small synthetic tables for the dashboard tests: 3 models (one the baseline) over 5
days, a regression of the candidate planted on one slice on the last day, and an output
holding a script."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.schema import Agg, Col, Drift, Slc
from llm_eval_pipeline.core.slices import ALL
from llm_eval_pipeline.tracking.dashboard_data import (
    REFERENCE,
    DashboardData,
    digest_examples,
)

DAYS = tuple(dt.date(2024, 5, 1) + dt.timedelta(days=i) for i in range(5))
BASE, CAND, OTHER = "base-model", "candidate", "other"
MODELS = (BASE, CAND, OTHER)
CORRECTNESS, HALLUCINATION, F1 = "answer_correctness", "hallucination_index", "token_f1"
METRICS_USED = (CORRECTNESS, HALLUCINATION, F1)
SLICES = ((ALL, ALL), ("task", "qa"), ("task", "summarization"))
PLANTED_SLICE = ("task", "qa")
PLANTED = "<script>window.__pwned=1</script>"
EXAMPLES = 6


def mean_of(model: str, day: int, metric: str) -> float:
    """A model's mean: the baseline steady, the candidate better, the other worse."""
    level = {BASE: 0.6, CAND: 0.65, OTHER: 0.4}[model] + 0.01 * day
    return 1 - level if metric == HALLUCINATION else level


def aggregates() -> pd.DataFrame:
    """metric_aggregates rows: CI = mean ± 0.02, 50 examples; latency for the data view."""
    rows = []
    for i, day in enumerate(DAYS):
        for model in MODELS:
            for metric in (*METRICS_USED, "latency_ms"):
                mean = 100.0 + i if metric == "latency_ms" else mean_of(model, i, metric)
                rows.append({Col.EVAL_DATE: day, Col.MODEL_ID: model, Agg.METRIC: metric,
                             Agg.COUNT: 50, Agg.MEAN: mean, Agg.CI_LOW: mean - 0.02,
                             Agg.CI_HIGH: mean + 0.02})  # fmt: skip
    return pd.DataFrame(rows)


def slices() -> pd.DataFrame:
    """metric_slices rows of the two candidates against the baseline: no_change, except
    the candidate's answer_correctness on task=qa on the last day (a regression) and
    the other's inconclusive hallucination index."""
    rows = []
    for i, day in enumerate(DAYS):
        for model in (CAND, OTHER):
            for key, value in SLICES:
                for metric in METRICS_USED:
                    planted = (
                        model == CAND
                        and i == len(DAYS) - 1
                        and (key, value) == PLANTED_SLICE
                        and metric == CORRECTNESS
                    )
                    verdict = Verdict.NO_CHANGE
                    if planted:
                        verdict = Verdict.REGRESSION
                    elif model == OTHER and metric == HALLUCINATION:
                        verdict = Verdict.INCONCLUSIVE
                    diff = -0.2 if planted else 0.01
                    rows.append({
                        Col.EVAL_DATE: day, Col.MODEL_ID: model, Slc.KEY: key, Slc.VALUE: value,
                        Agg.METRIC: metric, Agg.COUNT: 20, Agg.MEAN: 0.5 + diff,
                        Slc.BASELINE_MEAN: 0.5, Slc.DIFF: diff, Slc.DIFF_CI_LOW: diff - 0.05,
                        Slc.DIFF_CI_HIGH: diff + 0.05, Slc.Q_VALUE: 0.01 if planted else 0.5,
                        Slc.VERDICT: verdict,
                    })  # fmt: skip
    return pd.DataFrame(rows)


def drift() -> pd.DataFrame:
    """input_drift rows: a count and one test per day, the test drifting on the last day."""
    rows = []
    for i, day in enumerate(DAYS):
        rows.append(
            {
                Col.EVAL_DATE: day,
                Drift.TEST: "ids_added",
                Drift.STATISTIC: 6.0,
                Drift.P_VALUE: None,
                Drift.DRIFTED: None,
                Drift.DETAIL: "6 added",
            }
        )
        rows.append({Col.EVAL_DATE: day, Drift.TEST: "task_mix", Drift.STATISTIC: 0.1 * i,
                     Drift.P_VALUE: 0.5 if i < 4 else 0.001, Drift.DRIFTED: i == 4,
                     Drift.DETAIL: "chi-square"})  # fmt: skip
    return pd.DataFrame(rows)


def example_table(day: dt.date, model: str) -> pd.DataFrame:
    """One day×model's examples as ``stages.example_table`` gives them; the other model's
    first output is a script."""
    rng = np.random.default_rng(DAYS.index(day) * 10 + MODELS.index(model))
    return pd.DataFrame({
        Col.EXAMPLE_ID: [f"ex{i}" for i in range(EXAMPLES)],
        Col.PROMPT: [f"question {i}?" for i in range(EXAMPLES)],
        REFERENCE: [f"answer {i}" for i in range(EXAMPLES)],
        Col.OUTPUT: [PLANTED if model == OTHER and i == 0 else f"output {i} of {model}"
                     for i in range(EXAMPLES)],
        CORRECTNESS: rng.uniform(0, 1, EXAMPLES),
        HALLUCINATION: rng.uniform(0, 1, EXAMPLES),
        Col.EVAL_DATE: day,
        Col.MODEL_ID: model,
    })  # fmt: skip


def dashboard_data() -> DashboardData:
    """All of it, the examples digested as the asset does."""
    worst, outcomes = digest_examples([(d, MODELS) for d in DAYS], example_table, BASE)
    return DashboardData(aggregates(), slices(), drift(), worst, outcomes, BASE)
