"""B11: the dashboard page over 30 days × 5 models × 2,000 examples a day (synthetic
``metric_aggregates``, ``metric_slices``, ``input_drift`` and per-example metrics with
texts of about 300 characters): the worst examples and win/tie/loss counts digested one
day×model at a time, the page rendered, its size, and the time headless Chromium takes
from opening the file to the first chart drawn (vega-embed resolved, its SVG in the page).

    .venv/bin/python -m benchmarks.dashboard [--repetitions 5] [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import Result, Timing, main_for, repeat
from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.metrics.spec import LOWER
from llm_eval_pipeline.core.schema import Agg, Col, Drift, Slc
from llm_eval_pipeline.core.slices import ALL
from llm_eval_pipeline.tracking.dashboard import render_dashboard
from llm_eval_pipeline.tracking.dashboard_data import (
    DIRECTED_METRICS,
    REFERENCE,
    DashboardData,
    digest_examples,
)

MAX_MB, MAX_FIRST_CHART_S = 15.0, 2.0
CHROMIUM = Path("/usr/bin/chromium")
START = dt.date(2024, 5, 1)
METRICS_USED = DIRECTED_METRICS[:10]
SLICES = [(ALL, ALL), *(("task", t) for t in ("qa", "summarization", "open"))]
SLICES += [*(("prompt_length", v) for v in ("short", "medium", "long")), ("source", "web")]
SLICES += [("recurring", "true"), ("recurring", "false")]
DRIFT_TESTS = ("ids_added", "ids_removed", "ids_kept", "task_mix", "prompt_length_psi",
               "prompt_length_ks", "reference_length_ks", "prompt_embedding_shift")  # fmt: skip
TEXTS = 400
"""Distinct texts of each kind (ids pick among them): enough variety, little to build."""


def words(rng: np.random.Generator, count: int, length: int = 300) -> list[str]:
    """``count`` texts of about ``length`` characters of lowercase 'words'."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    return ["".join(rng.choice(letters, length)) for _ in range(count)]


class Synthetic:
    """Tables of ``days`` × ``models`` with ``examples`` examples a day (model 0 is the
    baseline); example tables are built on demand, as the store would read them."""

    def __init__(self, days: int, models: int, examples: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.days = [START + dt.timedelta(days=i) for i in range(days)]
        self.models = ["baseline", *(f"model-{i}" for i in range(1, models))]
        self.examples = examples
        self.texts = {c: words(self.rng, TEXTS) for c in (Col.PROMPT, REFERENCE, Col.OUTPUT)}
        self.quality = {m: 0.5 + 0.04 * i for i, m in enumerate(self.models)}

    def example_table(self, day: dt.date, model: str) -> pd.DataFrame:
        seed = self.days.index(day) * 100 + self.models.index(model)
        rng, n = np.random.default_rng(seed), self.examples
        pick = np.random.default_rng(self.days.index(day)).integers(0, TEXTS, n)
        frame = pd.DataFrame({
            Col.EXAMPLE_ID: [f"ex{i:05d}" for i in range(n)],
            **{c: [texts[i] for i in pick] for c, texts in self.texts.items()},
        })  # fmt: skip
        for metric in METRICS_USED:
            values = rng.beta(5 * self.quality[model], 5 * (1 - self.quality[model]), n)
            frame[metric] = 1 - values if METRICS[metric].better == LOWER else values
        frame[Col.EVAL_DATE], frame[Col.MODEL_ID] = day, model
        return frame

    def aggregates(self) -> pd.DataFrame:
        rows = []
        for day in self.days:
            for model in self.models:
                q = self.quality[model] + self.rng.normal(0, 0.01)
                values = {m: q if METRICS[m].better != LOWER else 1 - q for m in METRICS_USED}
                values |= {"error_rate": 0.01, "latency_ms": 120 / q, "tokens_per_s": 80 * q,
                           "cost_usd": 0.4 * q}  # fmt: skip
                for metric, mean in values.items():
                    half = abs(mean) * 0.03
                    rows.append({Col.EVAL_DATE: day, Col.MODEL_ID: model, Agg.METRIC: metric,
                                 Agg.COUNT: self.examples, Agg.MEAN: mean,
                                 Agg.CI_LOW: mean - half, Agg.CI_HIGH: mean + half})  # fmt: skip
        return pd.DataFrame(rows)

    def slices(self) -> pd.DataFrame:
        rows = []
        verdicts = [Verdict.NO_CHANGE, Verdict.INCONCLUSIVE, Verdict.IMPROVEMENT]
        for day in self.days:
            for model in self.models[1:]:
                for key, value in SLICES:
                    for metric in METRICS_USED:
                        diff = self.rng.normal(0, 0.03)
                        verdict = verdicts[int(self.rng.integers(0, 3))]
                        if self.rng.random() < 0.02:
                            verdict = Verdict.REGRESSION
                        rows.append({
                            Col.EVAL_DATE: day, Col.MODEL_ID: model, Slc.KEY: key,
                            Slc.VALUE: value, Agg.METRIC: metric, Agg.COUNT: 500,
                            Agg.MEAN: 0.6 + diff, Slc.BASELINE_MEAN: 0.6, Slc.DIFF: diff,
                            Slc.DIFF_CI_LOW: diff - 0.02, Slc.DIFF_CI_HIGH: diff + 0.02,
                            Slc.Q_VALUE: float(self.rng.random()), Slc.VERDICT: verdict,
                        })  # fmt: skip
        return pd.DataFrame(rows)

    def drift(self) -> pd.DataFrame:
        return pd.DataFrame([
            {Col.EVAL_DATE: day, Drift.TEST: test, Drift.STATISTIC: float(self.rng.random()),
             Drift.P_VALUE: float(self.rng.random()),
             Drift.DRIFTED: None if test.startswith("ids_") else bool(self.rng.random() < 0.1),
             Drift.DETAIL: f"{test} on {day}"}
            for day in self.days for test in DRIFT_TESTS
        ])  # fmt: skip


def build(synthetic: Synthetic) -> DashboardData:
    """The dashboard's data, the examples digested one day×model at a time."""
    partitions = [(day, synthetic.models) for day in synthetic.days]
    worst, outcomes = digest_examples(partitions, synthetic.example_table, synthetic.models[0])
    return DashboardData(synthetic.aggregates(), synthetic.slices(), synthetic.drift(), worst,
                         outcomes, synthetic.models[0])  # fmt: skip


def watch(page: Any) -> list[str]:
    """A list that collects ``page``'s console errors, page errors and requests to
    anything but a file."""
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: r.url.startswith("file:") or errors.append(r.url))
    return errors


def first_chart_seconds(path: Path, repetitions: int) -> list[float]:
    """Seconds from opening ``path`` in headless Chromium (a fresh page each time) to
    the first chart drawn; the page must log no error and request nothing outside."""
    from playwright.sync_api import sync_playwright

    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        for _ in range(repetitions):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = watch(page)
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="commit")
            page.wait_for_function("() => window.__dashboardReady === true", timeout=60_000)
            page.locator("#charts svg .mark-line path").first.wait_for(state="attached")
            seconds.append(time.perf_counter() - start)
            assert errors == [], errors[:3]
            page.close()
        browser.close()
    return seconds


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    days, models, examples = (5, 3, 200) if quick else (30, 5, 2000)
    synthetic = Synthetic(days, models, examples)
    digested, data = repeat(lambda: build(synthetic), 1)
    per_day = data.examples.groupby([Col.EVAL_DATE, Col.MODEL_ID]).size()
    assert len(per_day) == days * models and per_day.max() <= 20
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    render_dashboard(data, title="warm-up", generated_at=generated_at)  # the JS bundle, cached
    rendered, html = repeat(
        lambda: render_dashboard(data, title="B11", generated_at=generated_at),
        max(1, min(repetitions, 3)),
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dashboard.html"
        path.write_text(html, encoding="utf-8")
        size_mb = path.stat().st_size / 2**20
        first = first_chart_seconds(path, max(1, min(repetitions, 3)))
    first_s = statistics.median(first)
    met = size_mb < MAX_MB and first_s < MAX_FIRST_CHART_S
    misses = []
    if size_mb >= MAX_MB:
        misses.append(f"the page is {size_mb:.1f} MB (goal < {MAX_MB:g} MB)")
    if first_s >= MAX_FIRST_CHART_S:
        misses.append(f"the first chart took {first_s:.2f} s (goal < {MAX_FIRST_CHART_S:g} s)")
    return [
        Result(
            id="B11",
            title=f"dashboard page, {days} days × {models} models × {examples:,} examples a "
            "day (Altair/Vega-Lite, inlined)",
            baseline_label="",
            ours_label="render_dashboard (Python)",
            baseline=None,
            ours=rendered,
            ratio=None,
            goal=f"page < {MAX_MB:g} MB, first chart in Chromium < {MAX_FIRST_CHART_S:g} s",
            met=met,
            notes=[
                f"page size {size_mb:.2f} MB",
                f"first chart drawn in headless Chromium: {Timing(first).describe()}",
                f"worst examples and win/tie/loss digested one day×model at a time: "
                f"{digested.describe()} (building the synthetic tables included)",
                f"{len(data.examples):,} worst examples, {len(data.slices):,} slice rows",
            ],
            shortfall="; ".join(misses) or None,
        )
    ]


if __name__ == "__main__":
    main_for(run, __doc__)
