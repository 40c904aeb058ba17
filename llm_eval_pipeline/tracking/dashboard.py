"""One self-contained HTML page over ``metric_aggregates``: trend charts, a leaderboard,
the biggest day-over-day changes and each model's worst examples.

The page works offline: CSS is inline, charts are inline SVG drawn here, there is no
script, and a Content-Security-Policy forbids any request. Every piece of text that comes
from data (model names, metric names, prompts, outputs) goes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import date
from html import escape
from typing import NamedTuple

import pandas as pd

from llm_eval_pipeline.core.aggregate import day_change
from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.metrics import registry
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.schema import (
    PRIMARY_METRICS,
    Agg,
    Col,
)

REFERENCE = "reference"
"""Column of ``worst``: the example's first reference."""
REASON = Col.REASON
"""Column of ``worst``: why the example was picked."""


def _known(*names: str) -> tuple[str, ...]:
    """The names, checked against the metric registry at import time."""
    for name in names:
        registry.metric(name)
    return names


ANSWER_CORRECTNESS, HALLUCINATION_INDEX = _known("answer_correctness", "hallucination_index")
CORRECTNESS_REASON = f"lowest {ANSWER_CORRECTNESS}"
HALLUCINATION_REASON = f"highest {HALLUCINATION_INDEX}"
SHOWN_METRICS = _known(*PRIMARY_METRICS, "error_rate", "latency_ms", "tokens_per_s")
"""The metrics the page shows, in order; those without data are left out."""
WORST_COLUMNS = (Col.MODEL_ID, Col.EVAL_DATE, Col.EXAMPLE_ID, Col.PROMPT, REFERENCE)
WORST_COLUMNS += (Col.OUTPUT, ANSWER_CORRECTNESS, HALLUCINATION_INDEX, REASON)
PALETTE = ("#1f6fb4", "#d4442b", "#2b9a48", "#8d5ac4", "#e08a12", "#1aa5b8", "#8a5a44")
PALETTE += ("#d6549f", "#6b6b6b", "#9fa81c")
W, H, LEFT, RIGHT, TOP, BOTTOM = 400, 210, 52, 40, 10, 34
MAX_CHANGES = 10
SAME_VALUE_TOLERANCE = 1e-6
"""Relative: metrics computed in float32 (embeddings, model log-probabilities) differ by
about this much when the same examples are batched differently, so a smaller change of a
mean is no change (the demo's repeated days showed 0.130 vs 0.130 as "+0.000")."""
_CHANGES_NOTE = (
    '<p class="meta">Latest mean against the previous day with data, ranked by score = '
    "|change| / √(h₁² + h₂²), h being half of each day's 95% CI (above 1: beyond noise at "
    "about the 5% level); without a CI, by the change relative to the previous mean. "
    "The verdict comes from the change's interval: regression or improvement when it lies "
    "wholly beyond the margin, no_change when wholly within it, else inconclusive.</p>"
)
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}.meta{color:#666}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px}
td:first-child{white-space:nowrap}
th{background:#f0f0f0;text-align:left}td.num{text-align:right;white-space:nowrap}
.best{background:#e4f5e4;font-weight:600}.ci{color:#777;font-size:12px}
.improvement{color:#1c7a34}.regression{color:#b3261e}.inconclusive,.no_change{color:#555}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:16px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;border-radius:2px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}
figcaption{font-weight:600}svg text{font-size:10px;fill:#555}
.text{white-space:pre-wrap;max-height:9em;overflow:auto;max-width:32em}
.empty{padding:16px;background:#fff;border:1px dashed #bbb}
"""


def _finite(value: object) -> bool:
    """Whether ``value`` is a real number other than NaN and infinity."""
    return isinstance(value, int | float) and math.isfinite(value)


def _fmt(value: object) -> str:
    """A number for people: three decimals below 1, two up to 100, none beyond."""
    if not _finite(value):
        return "—"
    size = abs(float(value))
    return f"{value:,.0f}" if size >= 100 else f"{value:.2f}" if size >= 1 else f"{value:.3f}"


def _direction(metric: str) -> str:
    """A short note on which way is better (from the metric's spec)."""
    return METRICS[metric].direction_label


def _prepare(aggregates: pd.DataFrame) -> pd.DataFrame:
    """Rows of the primary metrics with a finite mean; dates as ``datetime.date``,
    model ids as ``str``, numbers as ``float`` (NaN where missing)."""
    cols = [Col.EVAL_DATE, Col.MODEL_ID, Agg.METRIC, Agg.MEAN, Agg.CI_LOW, Agg.CI_HIGH]
    frame = aggregates.reindex(columns=cols)
    frame = frame[frame[Agg.METRIC].isin(SHOWN_METRICS)].copy()
    for col in cols[3:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame = frame[frame[Agg.MEAN].abs() < math.inf]
    frame[Col.EVAL_DATE] = pd.to_datetime(frame[Col.EVAL_DATE]).dt.date
    frame[Col.MODEL_ID] = frame[Col.MODEL_ID].astype(str)
    return frame.sort_values([Agg.METRIC, Col.MODEL_ID, Col.EVAL_DATE], kind="stable")


def _ticks(lo: float, hi: float) -> list[float]:
    """Round values from at or below ``lo`` to at or above ``hi`` (``lo < hi``), about
    five, a step of 1, 2 or 5 times a power of ten apart."""
    raw = (hi - lo) / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * k for k in (1, 2, 5, 10) if power * k >= raw)
    first, digits = math.floor(lo / step) * step, max(0, -math.floor(math.log10(step)))
    count = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, digits) + 0.0 for i in range(count + 1)]  # no -0


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    """Linear map of [lo, hi] onto [out_lo, out_hi]; a zero-width domain maps to the middle."""
    if hi - lo <= 0:
        return lambda _: (out_lo + out_hi) / 2
    return lambda v: out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo)


def _chart(metric: str, rows: pd.DataFrame, days: list[date], colors: dict[str, str]) -> str:
    """A line chart of one metric over days: per model a CI band, a line and markers."""
    values = [v for c in (Agg.MEAN, Agg.CI_LOW, Agg.CI_HIGH) for v in rows[c] if _finite(v)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    ticks = _ticks(lo - pad, hi + pad)
    lo, hi = ticks[0], ticks[-1]
    x_of = _scale(days[0].toordinal(), days[-1].toordinal(), LEFT, W - RIGHT)
    y_of = _scale(lo, hi, H - BOTTOM, TOP)
    svg = [
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#999"/>'
    ]
    for v in ticks:
        y = y_of(v)
        svg.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{v:g}</text>')
    step = max(1, math.ceil(len(days) / 6))
    for d in days[::step]:
        x = x_of(d.toordinal())
        svg.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{d}</text>')
    for model, group in rows.groupby(Col.MODEL_ID, sort=True):
        color, name = colors[model], escape(model)
        series = group[[Col.EVAL_DATE, Agg.MEAN, Agg.CI_LOW, Agg.CI_HIGH]].to_numpy()
        pts = [(x_of(d.toordinal()), y_of(m), d, m, a, b) for d, m, a, b in series]
        band = [(x, y_of(a), y_of(b)) for x, _, _, _, a, b in pts if _finite(a) and _finite(b)]
        common = f'data-model="{name}" fill="{color}" fill-opacity="0.15"'
        if len(band) >= 2:
            ring = [(x, b) for x, _, b in band] + [(x, a) for x, a, _ in reversed(band)]
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in ring)
            svg.append(f'<polygon class="ci-band" {common} points="{coords}"/>')
        elif band:
            x, a, b = band[0]
            svg.append(
                f'<rect class="ci-band" {common} x="{x - 4:.1f}" y="{min(a, b):.1f}" '
                f'width="8" height="{abs(a - b):.1f}"/>'
            )
        path = " L".join(f"{x:.1f},{y:.1f}" for x, y, *_ in pts)
        svg.append(
            f'<path class="series-line" data-model="{name}" d="M{path}" fill="none" '
            f'stroke="{color}" stroke-width="2"><title>{name}</title></path>'
        )
        for x, y, d, m, a, b in pts:
            tip = f"{name} · {d}: {_fmt(m)} [{_fmt(a)}, {_fmt(b)}]"
            svg.append(
                f'<circle class="series-point" data-model="{name}" cx="{x:.1f}" '
                f'cy="{y:.1f}" r="3" fill="{color}"><title>{tip}</title></circle>'
            )
    label = f"{escape(metric)} over days; {_direction(metric)}"
    return (
        f'<figure class="chart" data-metric="{escape(metric)}"><figcaption>{escape(metric)}'
        f' <span class="meta">({_direction(metric)})</span></figcaption>'
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{label}">{"".join(svg)}</svg></figure>'
    )


def _metrics_in(frame: pd.DataFrame) -> list[str]:
    """The primary metrics present in ``frame``, in page order."""
    present = set(frame[Agg.METRIC])
    return [m for m in SHOWN_METRICS if m in present]


def _leaderboard(frame: pd.DataFrame, baseline: str | None) -> str:
    """Latest day: a row per metric, a column per model, mean and [ci_low, ci_high]."""
    board = Leaderboard.of(frame, SHOWN_METRICS, baseline)
    head = "".join(
        f"<th>{escape(m)}{' <em>(baseline)</em>' if m == baseline else ''}</th>"
        for m in board.models
    )
    body = []
    for metric in board.metrics:
        tds = []
        for model in board.models:
            entry = board.entry(model, metric)
            if entry is None:
                tds.append('<td class="num">—</td>')
                continue
            tds.append(
                f'<td class="num{" best" if entry.best else ""}">{_fmt(entry.mean)}'
                f"{' ★' if entry.best else ''}"
                f' <span class="ci">[{_fmt(entry.ci_low)}, {_fmt(entry.ci_high)}]</span></td>'
            )
        body.append(
            f'<tr data-metric="{escape(metric)}"><th>{escape(metric)} '
            f'<span class="meta">({_direction(metric)})</span></th>{"".join(tds)}</tr>'
        )
    return (
        f'<table class="leaderboard"><tr><th>metric ({board.day}); ★ best</th>{head}</tr>'
        f"{''.join(body)}</table>"
    )


class Change(NamedTuple):
    """One model's change of one metric's mean between two days."""

    model: str
    metric: str
    prev_day: date
    prev: float
    last: float
    change: float
    score: float
    unit: str
    verdict: str


def _changes(frame: pd.DataFrame, latest: date, margin: float) -> list[Change]:
    """Per model and metric with data on ``latest``, the change of mean from the previous
    day with data and its verdict (``core.aggregate.day_change``, ``margin`` relative to
    the previous mean). Ranked by ``score = |change| / sqrt(h_prev² + h_latest²)``, ``h``
    being half the CI width; where a CI is missing or zero-wide, by the relative change
    ``|change| / |previous mean|``. The ``MAX_CHANGES`` highest scores; changes within
    float32 precision (``SAME_VALUE_TOLERANCE``) left out."""
    found = []
    for (model, metric), group in frame.groupby([Col.MODEL_ID, Agg.METRIC], sort=True):
        if len(group) < 2 or group[Col.EVAL_DATE].iloc[-1] != latest:
            continue
        prev, last = group.iloc[-2], group.iloc[-1]
        day, was, now = prev[Col.EVAL_DATE], prev[Agg.MEAN], last[Agg.MEAN]
        if math.isclose(now, was, rel_tol=SAME_VALUE_TOLERANCE, abs_tol=1e-12):
            continue
        change = day_change(
            metric,
            (was, prev[Agg.CI_LOW], prev[Agg.CI_HIGH]),
            (now, last[Agg.CI_LOW], last[Agg.CI_HIGH]),
            margin,
        )
        by_ci = _finite(change.score)
        score = change.score if by_ci else abs(now - was) / (abs(was) or 1.0)
        unit = "× CI" if by_ci else "relative"
        found.append(Change(model, metric, day, was, now, now - was, score, unit, change.verdict))
    return sorted(found, key=lambda c: -c.score)[:MAX_CHANGES]


def _changes_table(changes: list[Change], days: int) -> str:
    """The biggest changes as a table, or a note when there are none."""
    if not changes:
        note = "No earlier day to compare with yet." if days < 2 else "No mean changed."
        return f'<p class="empty">{note}</p>'
    rows = "".join(
        f'<tr class="{c.verdict}"><td>{escape(c.model)}</td><td>{escape(c.metric)}</td>'
        f'<td>{c.prev_day}</td><td class="num">{_fmt(c.prev)}</td>'
        f'<td class="num">{_fmt(c.last)}</td>'
        f'<td class="num">{"+" if c.change > 0 else ""}{_fmt(c.change)}</td>'
        f'<td class="num">{c.score:.2f} {c.unit}</td><td>{c.verdict}</td></tr>'
        for c in changes
    )
    return (
        '<table class="changes"><tr><th>model</th><th>metric</th><th>previous day</th>'
        "<th>previous</th><th>latest</th><th>change</th><th>score</th><th>verdict</th></tr>"
        f"{rows}</table>"
    )


def _cell(value: object) -> str:
    """Escaped text of one ``worst`` cell; missing values as an empty string."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "" if missing else escape(str(value))


def _worst(worst: pd.DataFrame) -> str:
    """Per model, a table of its worst examples."""
    if worst.empty:
        return '<p class="empty">No examples yet.</p>'
    worst = worst.reindex(columns=list(WORST_COLUMNS))
    parts = []
    for model, group in worst.groupby(worst[Col.MODEL_ID].astype(str), sort=True):
        rows = "".join(
            f"<tr><td>{_cell(r[Col.EVAL_DATE])}</td><td>{_cell(r[REASON])}</td>"
            f'<td class="num">{_fmt(r[ANSWER_CORRECTNESS])}</td>'
            f'<td class="num">{_fmt(r[HALLUCINATION_INDEX])}</td>'
            + "".join(
                f'<td><div class="text">{_cell(r[c])}</div></td>'
                for c in (Col.PROMPT, REFERENCE, Col.OUTPUT)
            )
            + "</tr>"
            for _, r in group.iterrows()
        )
        parts.append(
            f'<section class="worst" data-model="{escape(model)}"><h3>{escape(model)}</h3>'
            f"<table><tr><th>day</th><th>reason</th><th>{ANSWER_CORRECTNESS}</th>"
            f"<th>{HALLUCINATION_INDEX}</th><th>prompt</th><th>{REFERENCE}</th><th>output</th>"
            f"</tr>{rows}</table></section>"
        )
    return "".join(parts)


def _legend(models: Iterable[str], colors: dict[str, str], baseline: str | None) -> str:
    """Model names with their colour, the baseline marked."""
    items = "".join(
        f'<li data-model="{escape(m)}"><span class="swatch" style="background:{colors[m]}">'
        f"</span>{escape(m)}{' (baseline)' if m == baseline else ''}</li>"
        for m in models
    )
    return f'<ul class="legend">{items}</ul>'


def render_dashboard(
    aggregates: pd.DataFrame,
    worst: pd.DataFrame,
    *,
    title: str,
    generated_at: str,
    margin: float,
    baseline: str | None = None,
) -> str:
    """The dashboard as one self-contained HTML page; ``margin`` is the relative margin of
    the day-over-day verdicts (``regression_margin``).

    ``aggregates`` holds ``metric_aggregates`` rows of any days and models (``eval_date``
    as dates or timestamps); ``worst`` is what :func:`worst_examples` returns. Metrics
    outside :data:`SHOWN_METRICS`, and rows whose mean is missing, are left out."""
    frame = _prepare(aggregates)
    models = sorted(set(frame[Col.MODEL_ID]))
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    if frame.empty:
        main = '<p class="empty">No evaluation data yet: no metric aggregates to show.</p>'
    else:
        days = sorted(set(frame[Col.EVAL_DATE]))
        charts = "".join(
            _chart(m, frame[frame[Agg.METRIC] == m], days, colors) for m in _metrics_in(frame)
        )
        main = (
            f'<p class="meta">Latest day: {days[-1]}; {len(days)} day(s), '
            f"{len(models)} model(s).</p>{_legend(models, colors, baseline)}"
            f"<h2>Leaderboard</h2>{_leaderboard(frame, baseline)}"
            f"<h2>Biggest day-over-day changes</h2>{_CHANGES_NOTE}"
            f"{_changes_table(_changes(frame, days[-1], margin), len(days))}"
            f'<h2>Trends</h2><p class="meta">Lines are daily means; shaded bands are 95% '
            f'bootstrap confidence intervals.</p><div class="charts">{charts}</div>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">Generated at {escape(generated_at)}</p>'
        f"{main}<h2>Worst examples</h2>{_worst(worst)}</body></html>\n"
    )


def _first_reference(refs: object) -> str:
    """The first reference of a list (or array) of references; a string as it is."""
    if isinstance(refs, str):
        return refs
    return str(refs[0]) if hasattr(refs, "__len__") and len(refs) else ""


def worst_examples(frame: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Per model, on its latest day, the ``n`` examples with the lowest
    ``answer_correctness`` and the ``n`` with the highest ``hallucination_index`` (missing
    scores never picked; an example may appear under both reasons), in the ``worst``
    format of :func:`render_dashboard`: columns :data:`WORST_COLUMNS`."""
    if frame.empty:
        return pd.DataFrame(columns=list(WORST_COLUMNS))
    frame = frame.copy()
    if Col.REFERENCES in frame:
        frame[REFERENCE] = frame[Col.REFERENCES].map(_first_reference)
    frame = frame.reindex(columns=[c for c in WORST_COLUMNS if c != REASON])
    frame[REFERENCE] = frame[REFERENCE].fillna("")
    for metric in (ANSWER_CORRECTNESS, HALLUCINATION_INDEX):
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    frame[Col.EVAL_DATE] = pd.to_datetime(frame[Col.EVAL_DATE]).dt.date
    latest = frame.groupby(Col.MODEL_ID)[Col.EVAL_DATE].transform("max")
    frame = frame[frame[Col.EVAL_DATE] == latest]
    picks = []
    for metric, reason, lowest in (
        (ANSWER_CORRECTNESS, CORRECTNESS_REASON, True),
        (HALLUCINATION_INDEX, HALLUCINATION_REASON, False),
    ):
        scored = frame[frame[metric].notna()]
        ordered = scored.sort_values([metric, Col.EXAMPLE_ID], ascending=[lowest, True])
        picks.append(ordered.groupby(Col.MODEL_ID, sort=False).head(n).assign(**{REASON: reason}))
    out = pd.concat(picks, ignore_index=True)
    return out.sort_values(Col.MODEL_ID, kind="stable", ignore_index=True)[list(WORST_COLUMNS)]
