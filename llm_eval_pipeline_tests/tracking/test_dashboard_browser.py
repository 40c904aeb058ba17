"""The dashboard page in headless Chromium, opened from a file:// URL: 3 models over 5
days, a regression planted on one slice on the last day, an output holding a script.
The controls are used as a person would (checkbox, selects, hover, search) and the
charts must follow; the strict CSP must hold (no error, no request, no script run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Locator, Page

from llm_eval_pipeline.core.schema import Agg, Col
from llm_eval_pipeline.core.slices import slice_name
from llm_eval_pipeline.tracking.dashboard import CHARTS_ID, EMPTY_NOTE, render_dashboard
from llm_eval_pipeline.tracking.dashboard_charts import (
    BRUSH,
    CHOSEN_SLICE_MARK,
    COMPARE_SIGNAL,
    DAY_SIGNAL,
    METRIC_SIGNAL,
    SEARCH_SIGNAL,
    SLICE_SIGNAL,
    TREND_POINTS_MARK,
)
from llm_eval_pipeline.tracking.dashboard_data import DashboardData
from llm_eval_pipeline_tests.browser import PageRecord, browser, open_page  # noqa: F401
from llm_eval_pipeline_tests.tracking.dashboard_tables import (
    CAND,
    CORRECTNESS,
    DAYS,
    OTHER,
    PLANTED,
    PLANTED_SLICE,
    aggregates,
    dashboard_data,
)

READY = "() => window.__dashboardReady === true"
LINES = f"#{CHARTS_ID} .mark-line path"
POINTS = f'#{CHARTS_ID} [class*="{TREND_POINTS_MARK}"] path'
OUTLINE = f'#{CHARTS_ID} [class*="{CHOSEN_SLICE_MARK}"] path'


@pytest.fixture(scope="module")
def page_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard") / "dashboard.html"
    html = render_dashboard(dashboard_data(), title="LLM eval", generated_at="2024-05-05")
    path.write_text(html, encoding="utf-8")
    return path


@pytest.fixture
def opened(browser, page_path: Path) -> Iterator[PageRecord]:  # noqa: F811
    """The page with its charts drawn; afterwards, nothing went wrong on it."""
    with open_page(browser, page_path.as_uri()) as record:
        record.page.wait_for_function(READY, timeout=30_000)
        yield record
        assert record.console_errors == [] and record.page_errors == []
        assert record.external_requests == []


def control(page: Page, name: str) -> Locator:
    """The input bound to signal ``name`` (Vega names it after the signal)."""
    return page.locator(f'.vega-bind [name="{name}"]')


def signal(record: PageRecord, name: str) -> object:
    return record.page.evaluate("(name) => window.__view.signal(name)", name)


def test_unchecking_a_model_removes_its_lines_and_examples(opened: PageRecord) -> None:
    page = opened.page
    lines, rows = page.locator(LINES).count(), page.locator("table.worst tbody tr").count()
    assert lines > 0 and rows == 3 * 6  # every example of the 3 models on the last day
    page.get_by_label(OTHER, exact=True).uncheck()
    page.wait_for_function(f"(n) => document.querySelectorAll('{LINES}').length < n", arg=lines)
    # one line fewer in the overview and in each small chart (3 quality metrics, latency)
    assert page.locator(LINES).count() == lines - 5
    assert page.locator("table.worst tbody tr").count() == 2 * 6
    assert page.get_by_text(PLANTED).count() == 0  # the other model's examples are hidden


def test_hovering_a_trend_point_shows_its_interval(opened: PageRecord) -> None:
    page = opened.page
    point = page.locator(POINTS).first
    label = point.get_attribute("aria-label")
    interval = label.split("95% interval: ")[1].split(";")[0]
    assert interval.startswith("[") and interval.endswith("]")
    point.hover()
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    assert "95% interval" in text and interval in text and "mean" in text and "n" in text


def test_choosing_a_slice_moves_the_heat_map_outline_and_marks_its_regression(
    opened: PageRecord,
) -> None:
    page = opened.page
    outline = page.locator(OUTLINE)
    assert outline.count() > 0  # one cell per metric on the slice all
    before = outline.first.bounding_box()
    diamonds = page.locator(f'{POINTS}[aria-label*="regression vs the baseline on: task=qa"]')
    assert diamonds.count() == 1  # the planted one, an ordinary point so far
    small = diamonds.first.bounding_box()
    planted = slice_name(*PLANTED_SLICE)
    control(page, SLICE_SIGNAL).select_option(planted)
    assert signal(opened, SLICE_SIGNAL) == planted
    page.wait_for_function(
        f"(x) => document.querySelector('{OUTLINE}').getBoundingClientRect().x !== x",
        arg=before["x"],
    )
    assert outline.first.bounding_box()["x"] > before["x"]
    assert diamonds.first.bounding_box()["width"] > small["width"]  # now a big diamond


def test_the_comparison_shows_the_planted_regression(opened: PageRecord) -> None:
    page = opened.page
    control(page, COMPARE_SIGNAL).select_option(CAND)
    control(page, METRIC_SIGNAL).select_option(CORRECTNESS)
    control(page, DAY_SIGNAL).select_option(str(DAYS[-1]))
    assert signal(opened, METRIC_SIGNAL) == CORRECTNESS
    page.get_by_text("regression, q=0.01").first.wait_for()
    assert page.get_by_text("regression, q=0.01").count() == 1  # per slice: task=qa only
    assert page.get_by_text("against the baseline").count() > 0
    control(page, DAY_SIGNAL).select_option(str(DAYS[0]))
    page.get_by_text("regression, q=0.01").first.wait_for(state="detached")


def test_a_planted_script_stays_text_and_search_filters_examples(opened: PageRecord) -> None:
    page = opened.page
    shown = page.get_by_text(PLANTED)
    assert shown.count() == 1 and shown.first.is_visible()
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator(".worst script").count() == 0
    control(page, SEARCH_SIGNAL).fill("of candidate")
    page.wait_for_function("() => document.querySelectorAll('table.worst tbody tr').length === 6")
    assert page.get_by_text(PLANTED).count() == 0
    assert "6 of 18" in page.locator("#examples-count").inner_text()
    control(page, SEARCH_SIGNAL).fill("")
    page.wait_for_function("() => document.querySelectorAll('table.worst tbody tr').length === 18")


def test_the_data_view_and_the_leaderboard(opened: PageRecord) -> None:
    page = opened.page
    trend = page.evaluate("() => window.__view.data('trend').length")
    assert trend == len(dashboard_data().aggregates.query(f"{Agg.METRIC} != 'latency_ms'"))
    assert page.get_by_text("Input drift", exact=False).count() > 0
    board = page.locator("table.leaderboard")
    assert board.locator(f'th[data-model="{CAND}"]').count() == 1
    assert (
        board.locator(f'tr[data-metric="{CORRECTNESS}"] td.best')
        .inner_text()
        .startswith(
            "0.690"  # the candidate's mean on the last day, higher is better
        )
    )
    assert {Col.PROMPT, Col.OUTPUT} <= set(page.locator("table.worst th").all_inner_texts())
    if os.environ.get("LLM_EVAL_SCREENSHOTS") == "1":
        target = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / "dashboard.png"))  # the top: controls, trends


def test_brushing_a_date_range_narrows_the_trends(opened: PageRecord) -> None:
    page = opened.page
    points = page.locator(POINTS).count()
    area = page.locator(f'#{CHARTS_ID} [class*="{BRUSH}_brush_bg"] path').first.bounding_box()
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + 2, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.3, y, steps=5)
    page.mouse.up()
    page.wait_for_function(f"(n) => document.querySelectorAll('{POINTS}').length < n", arg=points)
    brushed = page.evaluate(f"() => window.__view.signal('{BRUSH}')")
    assert brushed and page.locator(POINTS).count() < points


@pytest.mark.parametrize("days", [0, 1], ids=["empty", "one-day-no-baseline"])
def test_small_pages_open_without_errors(browser, tmp_path: Path, days: int) -> None:  # noqa: F811
    frame = aggregates()
    frame = frame[frame[Col.EVAL_DATE].isin(DAYS[:days])]
    data = DashboardData(frame, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    path = tmp_path / "dashboard.html"
    path.write_text(render_dashboard(data, title="t", generated_at="now"), encoding="utf-8")
    with open_page(browser, path.as_uri()) as record:
        if days:
            record.page.wait_for_function(READY, timeout=30_000)
            assert record.page.locator(LINES).count() == 3 + 3 * 3 + 3
        else:
            assert record.page.get_by_text(EMPTY_NOTE).is_visible()
        assert record.console_errors == [] and record.page_errors == []
        assert record.external_requests == []
