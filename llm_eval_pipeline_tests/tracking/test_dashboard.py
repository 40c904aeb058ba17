"""The HTML dashboard: its content checked as text, then the page opened in headless
Chromium from a file:// URL (no network, no script running, one line per model)."""

from __future__ import annotations

import math
import os
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.schema import Agg, Col
from llm_eval_pipeline.tracking.dashboard import (
    ANSWER_CORRECTNESS,
    CORRECTNESS_REASON,
    HALLUCINATION_INDEX,
    HALLUCINATION_REASON,
    REASON,
    REFERENCE,
    SHOWN_METRICS,
    WORST_COLUMNS,
    render_dashboard,
    worst_examples,
)
from llm_eval_pipeline_tests.browser import browser, open_page  # noqa: F401 (fixture)

DAYS = (date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3))
BASE, CAND, NEW = "baseline-model", "candidate", "newcomer"
ROUGE_L, LATENCY, TOKENS = "rougeL", "latency_ms", "output_tokens"
NAN = math.nan
# Means per metric and model over DAYS; NEW only has the latest day, CAND misses a
# rougeL mean on the second day, no model has judge_correctness.
MEANS = {
    ANSWER_CORRECTNESS: {BASE: (0.60, 0.61, 0.62), CAND: (0.50, 0.55, 0.70), NEW: (0.40,)},
    HALLUCINATION_INDEX: {BASE: (0.30, 0.30, 0.29), CAND: (0.20, 0.25, 0.40), NEW: (0.10,)},
    ROUGE_L: {BASE: (0.30, 0.31, 0.32), CAND: (0.28, NAN, 0.33), NEW: (0.20,)},
    LATENCY: {BASE: (120.0, 118.0, 119.0), CAND: (200.0, 190.0, 185.0), NEW: (90.0,)},
    TOKENS: {BASE: (30.0, 31.0, 32.0), CAND: (30.0, 30.0, 30.0), NEW: (12.0,)},
}
SCRIPT = "<script>window.__pwned = 1</script><b>bold</b>"


def aggregates(means: dict[str, dict[str, tuple[float, ...]]] = MEANS) -> pd.DataFrame:
    """Rows of metric_aggregates: a model's means end on the last day; CI = mean ± 2%."""
    rows = []
    for metric, by_model in means.items():
        for model, values in by_model.items():
            for day, mean in zip(DAYS[-len(values) :], values, strict=True):
                half = abs(mean) * 0.02
                rows.append(
                    {Col.EVAL_DATE: day, Col.MODEL_ID: model, Agg.METRIC: metric,
                     Agg.COUNT: 50, Agg.MEAN: mean, Agg.STD: 0.1, Agg.P50: mean, Agg.P90: mean,
                     Agg.CI_LOW: mean - half, Agg.CI_HIGH: mean + half, Agg.ROWS: 50}
                )  # fmt: skip
    return pd.DataFrame(rows)


def examples() -> pd.DataFrame:
    """Per-example rows of two models over two days."""
    rows = []
    for model in (BASE, CAND):
        for day in DAYS[1:]:
            for i in range(6):
                rows.append(
                    {Col.MODEL_ID: model, Col.EVAL_DATE: day, Col.EXAMPLE_ID: f"ex{i}",
                     Col.PROMPT: f"question {i} <?>", Col.REFERENCES: [f"answer {i}", "alt"],
                     Col.OUTPUT: SCRIPT if i == 0 else f"output {i}",
                     ANSWER_CORRECTNESS: i / 10 if i != 1 else NAN,
                     HALLUCINATION_INDEX: 1 - i / 10}
                )  # fmt: skip
    return pd.DataFrame(rows)


def page(**kwargs: object) -> str:
    worst = kwargs.pop("worst", worst_examples(examples(), n=2))
    return render_dashboard(
        kwargs.pop("aggregates", aggregates()),
        worst,
        title="LLM eval <nightly>",
        generated_at="2024-05-03T06:00:00+00:00",
        baseline=BASE,
        margin=kwargs.pop("margin", 0.02),
        **kwargs,
    )


def charts(html: str) -> dict[str, str]:
    """Each chart's markup by its data-metric."""
    return dict(re.findall(r'<figure class="chart" data-metric="([^"]+)">(.*?)</figure>', html))


def expected_lines() -> dict[str, set[str]]:
    """Per primary metric with data, the models that have a mean for it."""
    return {
        metric: {m for m, values in by_model.items() if any(not math.isnan(v) for v in values)}
        for metric, by_model in MEANS.items()
        if metric in SHOWN_METRICS
    }


def table_row(html: str, metric: str) -> list[str]:
    """The leaderboard cells of one metric, in model order."""
    row = re.search(rf'<tr data-metric="{metric}">(.*?)</tr>', html).group(1)
    return re.findall(r"<td(.*?)</td>", row)


def test_one_line_per_model_in_each_chart_of_a_metric_with_data() -> None:
    found = charts(page())
    assert set(found) == set(expected_lines())  # no judge_correctness, no output_tokens
    for metric, models in expected_lines().items():
        lines = re.findall(r'<path class="series-line" data-model="([^"]+)"', found[metric])
        assert sorted(lines) == sorted(models), metric
    assert list(found) == [m for m in SHOWN_METRICS if m in found]


def test_missing_means_are_skipped_and_no_nan_reaches_the_svg() -> None:
    svg = charts(page())[ROUGE_L]
    coords = re.findall(r' (?:d|points|[xy][12]?|c[xy]|r|width|height)="([^"]*)"', svg)
    assert len(coords) > 50 and all(re.fullmatch(r"[-0-9., ML]+", c) for c in coords)
    cand = re.search(rf'class="series-line" data-model="{CAND}" d="([^"]+)"', svg).group(1)
    assert cand.count(",") == 2  # two days with a mean
    assert len(re.findall(rf'<circle class="series-point" data-model="{CAND}"', svg)) == 2


def test_a_model_with_a_single_day_gets_a_marker_and_an_interval() -> None:
    svg = charts(page())[ANSWER_CORRECTNESS]
    new = re.search(rf'class="series-line" data-model="{NEW}" d="([^"]+)"', svg).group(1)
    assert new.startswith("M") and " L" not in new
    assert f'<circle class="series-point" data-model="{NEW}"' in svg
    assert f'<rect class="ci-band" data-model="{NEW}"' in svg
    assert f'<polygon class="ci-band" data-model="{BASE}"' in svg


def test_leaderboard_marks_the_best_model_by_direction_and_the_baseline() -> None:
    html = page()
    assert f"{BASE} <em>(baseline)</em>" in html
    best = {
        m: [i for i, c in enumerate(table_row(html, m)) if "best" in c] for m in expected_lines()
    }
    assert best[ANSWER_CORRECTNESS] == [1]  # candidate, 0.70: higher is better
    assert best[HALLUCINATION_INDEX] == [2]  # newcomer, 0.10: lower is better
    assert best[LATENCY] == [2]
    assert f'<tr data-metric="{TOKENS}">' not in html  # not a primary metric
    assert "0.700 ★" in table_row(html, ANSWER_CORRECTNESS)[1]
    assert "[0.686, 0.714]" in table_row(html, ANSWER_CORRECTNESS)[1]


def test_biggest_changes_are_ranked_and_judged_by_direction() -> None:
    table = re.search(r'<table class="changes">(.*?)</table>', page()).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr class.*?</tr>", table)]
    top = {(r[0], r[1]): r[-1] for r in rows[:2]}
    assert top == {
        (CAND, ANSWER_CORRECTNESS): "improvement",
        (CAND, HALLUCINATION_INDEX): "regression",
    }
    by_key = {(r[0], r[1]): r for r in rows}
    assert by_key[(CAND, ROUGE_L)][2] == str(DAYS[0])  # the previous day with data
    # latency fell by 5 ms, but its interval [-10.3, +0.3] reaches past the 3.8 ms margin
    assert by_key[(CAND, LATENCY)][-1] == "inconclusive"
    assert all(r[0] != NEW for r in rows)  # nothing to compare with


def test_a_change_that_rounds_to_zero_is_no_change_not_a_regression() -> None:
    # the change's interval is ±0.014 (two days' CIs of ±2%): within a 5% margin (±0.025)
    html = page(aggregates=aggregates({ROUGE_L: {BASE: (0.5000, 0.49996)}}), margin=0.05)
    table = re.search(r'<table class="changes">(.*?)</table>', html).group(1)
    (row,) = [
        re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr class.*?</tr>", table)
    ]
    assert row[5].startswith("-0.000") and row[-1] == "no_change"
    assert '<tr class="no_change">' in table and "regression" not in table


def test_text_from_data_is_escaped() -> None:
    model = '<img src=x onerror="alert(1)">'
    html = page(aggregates=aggregates({ROUGE_L: {model: (0.5, 0.6)}}))
    assert "<script>window" not in html and "<b>bold" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    assert 'data-model="&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"' in html
    assert "<title>LLM eval &lt;nightly&gt;</title>" in html


def test_the_page_has_no_external_url() -> None:
    html = page()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "://" not in html and "<script" not in html and "@import" not in html
    assert "default-src 'none'" in html  # the browser refuses any request or script


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(),
        aggregates({}).reindex(columns=[Col.EVAL_DATE, Col.MODEL_ID, Agg.METRIC, Agg.MEAN]),
        aggregates({TOKENS: MEANS[TOKENS]}),
        aggregates({ROUGE_L: {BASE: (NAN, NAN)}}),
    ],
    ids=["no-columns", "no-rows", "no-primary-metric", "only-nan"],
)
def test_no_data_renders_a_page_that_says_so(frame: pd.DataFrame) -> None:
    html = page(aggregates=frame, worst=pd.DataFrame())
    assert "No evaluation data yet" in html and "No examples yet" in html
    assert "<svg" not in html and html.rstrip().endswith("</html>")


def test_a_single_day_renders_without_changes() -> None:
    html = page(aggregates=aggregates({ROUGE_L: {BASE: (0.4,), CAND: (0.5,)}}))
    assert set(charts(html)) == {ROUGE_L}
    assert "No earlier day to compare with yet" in html


def test_worst_examples_pick_the_latest_day_per_model() -> None:
    frame = examples()
    frame.loc[(frame[Col.MODEL_ID] == CAND) & (frame[Col.EVAL_DATE] == DAYS[2]), Col.MODEL_ID] = (
        "gone"  # CAND's latest day is now the second one
    )
    worst = worst_examples(frame, n=2)
    assert list(worst.columns) == list(WORST_COLUMNS)
    picked = {
        (model, reason): list(group[Col.EXAMPLE_ID])
        for (model, reason), group in worst.groupby([Col.MODEL_ID, REASON], sort=False)
    }
    lowest = ["ex0", "ex2"]  # ex1 has no answer_correctness
    highest = ["ex0", "ex1"]
    assert picked == {
        (m, r): ids
        for m in (BASE, CAND, "gone")
        for r, ids in ((CORRECTNESS_REASON, lowest), (HALLUCINATION_REASON, highest))
    }
    assert set(worst.loc[worst[Col.MODEL_ID] == CAND, Col.EVAL_DATE]) == {DAYS[1]}
    assert set(worst.loc[worst[Col.MODEL_ID] == BASE, Col.EVAL_DATE]) == {DAYS[2]}
    assert set(worst[REFERENCE]) == {"answer 0", "answer 1", "answer 2"}


def test_worst_examples_take_a_reference_column_or_arrays_and_empty_frames() -> None:
    frame = examples().head(3)
    frame[Col.REFERENCES] = [np.array(["first", "second"]), [], None]
    refs = worst_examples(frame, n=3).set_index(Col.EXAMPLE_ID)[REFERENCE]
    assert refs.to_dict() == {"ex0": "first", "ex1": "", "ex2": ""}
    given = examples().drop(columns=[Col.REFERENCES]).assign(**{REFERENCE: "given"})
    assert set(worst_examples(given, n=1)[REFERENCE]) == {"given"}
    assert worst_examples(pd.DataFrame()).empty
    assert list(worst_examples(pd.DataFrame()).columns) == list(WORST_COLUMNS)


def test_the_page_in_chromium(browser, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "dashboard.html"
    path.write_text(page(), encoding="utf-8")
    with open_page(browser, path.as_uri()) as opened:
        view = opened.page
        assert opened.console_errors == [] and opened.page_errors == []
        assert opened.external_requests == []
        for metric, models in expected_lines().items():
            lines = view.locator(f'figure[data-metric="{metric}"] .series-line')
            assert lines.count() == len(models), metric
            for model in models:
                assert lines.and_(view.locator(f'[data-model="{model}"]')).count() == 1
        assert view.locator("figure[data-metric]").count() == len(expected_lines())
        assert view.evaluate("() => window.__pwned") is None
        assert view.locator(".worst b, .worst script").count() == 0
        shown = view.get_by_text("<script>window.__pwned = 1</script><b>bold</b>")
        assert shown.count() == 4 and shown.first.is_visible()  # ex0, both lists, 2 models
        view.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        if os.environ.get("LLM_EVAL_SCREENSHOTS") == "1":
            target = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
            target.mkdir(parents=True, exist_ok=True)
            view.screenshot(path=str(target / "dashboard.png"), full_page=True)


def test_a_change_within_rounding_is_no_change_at_all() -> None:
    html = page(aggregates=aggregates({ROUGE_L: {BASE: (0.5, 0.5 + 1e-13)}}))
    assert '<table class="changes">' not in html and "No mean changed." in html


def test_a_change_within_float32_noise_is_no_change() -> None:
    """The demo's repeated days gave 0.130 against 0.130 (a float32 batching difference)."""
    html = page(aggregates=aggregates({ROUGE_L: {BASE: (0.13, 0.13 * (1 + 2e-7))}}))
    assert "No mean changed." in html
