"""One self-contained HTML page over the evaluation tables: interactive Vega-Lite charts
(trends, the comparison with the baseline, slices, input drift, cost and speed), the
latest day's leaderboard and each model's worst examples per day.

The page works offline, from disk: Vega, Vega-Lite and vega-embed are inlined (the
bundle of ``vl_convert``), and a Content-Security-Policy forbids every request and any
script but the page's own two, allowed by their SHA-256 hashes. Vega would compile its
expressions with ``new Function`` (which needs ``'unsafe-eval'``); the page asks for
Vega's CSP-safe expression interpreter instead (vega-embed ``ast: true``). Data goes in
as JSON inside ``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped,
so no text of it can close the element; the examples table is filled with
``textContent`` only, so a ``<script>`` in an output stays text.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import subprocess
import sys
from html import escape
from importlib.metadata import version as package_version
from importlib.resources import files
from pathlib import Path
from typing import Any

import altair as alt

from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.tracking.dashboard_charts import (
    CHOICES_ELEMENT,
    DAY_SIGNAL,
    MODEL_SIGNAL,
    MODELS_ELEMENT,
    SEARCH_ELEMENT,
    SEARCH_SIGNAL,
    dashboard_spec,
    rows_table,
)
from llm_eval_pipeline.tracking.dashboard_data import (
    LEADERBOARD_METRICS,
    REFERENCE,
    WORST_N,
    DashboardData,
    days,
    example_rows,
    fmt,
    means,
    metric_label,
    models,
)

APP_SCRIPT = files(__package__).joinpath("dashboard_app.js").read_text(encoding="utf-8")
"""The page's own script: embeds the charts, fills the examples table."""
SPEC_ID, CONFIG_ID, CHARTS_ID = "dashboard-spec", "dashboard-config", "charts"
EXAMPLES_ID, EXAMPLES_COUNT_ID = "examples-body", "examples-count"
EMPTY_NOTE = "No evaluation data yet: no metric aggregates to show."
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}.meta{color:#666}
#controls{position:sticky;top:0;z-index:2;background:#fff;border:1px solid #ddd;
padding:8px 12px;margin:12px 0;display:flex;flex-wrap:wrap;gap:6px 24px;align-items:center}
#controls .vega-bind{display:inline-block;margin-right:14px}
#controls .vega-bind-name{margin-right:4px}
.group-name{font-weight:600;margin-right:8px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 8px}
th{background:#f0f0f0;text-align:left;vertical-align:top}td{vertical-align:top}
td.num{text-align:right;white-space:nowrap}.best{background:#e4f5e4;font-weight:600}
.ci{color:#777;font-size:12px}
.text{white-space:pre-wrap;max-height:9em;overflow:auto;max-width:30em}
.empty{padding:16px;background:#fff;border:1px dashed #bbb}
#charts{background:#fff;border:1px solid #ddd;padding:8px}
#ctl-search input{width:24em}
"""


def script_json(value: Any) -> str:
    """``value`` as JSON to put inside ``<script type="application/json">``: ``<``,
    ``>`` and ``&`` written as ``\\u003c`` and so on, so neither ``</script>`` nor
    ``<!--`` can occur; ``JSON.parse`` reads the same value back."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def script_hash(text: str) -> str:
    """The CSP source that allows an inline script of exactly ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


_BUNDLE = (
    "import sys, vl_convert; sys.stdout.write(vl_convert.javascript_bundle(vl_version=sys.argv[1]))"
)


def vl_convert_version() -> str:
    return package_version("vl-convert-python")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm_eval_pipeline"


@functools.cache
def vega_bundle() -> str:
    """Vega, Vega-Lite (the version Altair writes) and vega-embed in one script.

    ``vl_convert`` builds it in a JavaScript runtime that stays resident in the process
    that starts it (about 140 MB), so a child process builds it once per vl-convert and
    Vega-Lite version, into the user's cache folder; the dashboard reads it from there."""
    version = alt.SCHEMA_VERSION.lstrip("v").rsplit(".", 1)[0]
    cached = _cache_dir() / f"vega-{vl_convert_version()}-vl{version}.js"
    if cached.exists():
        bundle = cached.read_text(encoding="utf-8")
    else:
        bundle = subprocess.run(
            [sys.executable, "-c", _BUNDLE, version],
            capture_output=True, text=True, encoding="utf-8", check=True,
        ).stdout  # fmt: skip
        if not bundle:
            raise RuntimeError(f"vl_convert wrote no Vega bundle for Vega-Lite {version}")
        with contextlib.suppress(OSError):  # no cache folder: built again next time
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(bundle, encoding="utf-8")
            os.replace(partial, cached)
    if "</script" in bundle.lower() or "<!--" in bundle:
        raise ValueError("the Vega bundle cannot be inlined: it holds </script or <!--")
    return bundle


def csp(scripts: list[str]) -> str:
    """No request of any kind; only ``scripts`` (by hash) may run."""
    allowed = " ".join(script_hash(s) for s in scripts) or "'none'"
    return f"default-src 'none'; script-src {allowed}; style-src 'unsafe-inline'; img-src data:"


def _leaderboard(data: DashboardData) -> str:
    """The latest day: a row per metric, a column per model, mean and [ci_low, ci_high]."""
    board = Leaderboard.of(means(data.aggregates, LEADERBOARD_METRICS), LEADERBOARD_METRICS,
                           data.baseline)  # fmt: skip
    head = "".join(
        f'<th data-model="{escape(m)}">{escape(m)}'
        f"{' <em>(baseline)</em>' if m == board.baseline else ''}</th>"
        for m in board.models
    )
    body = []
    for metric in board.metrics:
        cells = []
        for model in board.models:
            entry = board.entry(model, metric)
            if entry is None:
                cells.append('<td class="num">—</td>')
                continue
            interval = (
                f' <span class="ci">[{fmt(entry.ci_low)}, {fmt(entry.ci_high)}]</span>'
                if entry.has_interval
                else ""
            )
            cells.append(
                f'<td class="num{" best" if entry.best else ""}">{fmt(entry.mean)}'
                f"{' ★' if entry.best else ''}{interval}</td>"
            )
        body.append(
            f'<tr data-metric="{escape(metric)}"><th>{escape(metric_label(metric))}</th>'
            f"{''.join(cells)}</tr>"
        )
    return (
        f'<table class="leaderboard"><tr><th>metric ({board.day}); ★ best</th>{head}</tr>'
        f"{''.join(body)}</table>"
    )


def _config(data: DashboardData) -> dict[str, Any]:
    """What the page's script needs besides the spec: element ids, signal names and the
    worst examples as rows."""
    return {
        "charts": CHARTS_ID,
        "examples": EXAMPLES_ID,
        "count": EXAMPLES_COUNT_ID,
        "models": models(data),
        "modelSignals": [MODEL_SIGNAL.format(i) for i in range(len(models(data)))],
        "daySignal": DAY_SIGNAL,
        "searchSignal": SEARCH_SIGNAL,
        "modelColumn": Col.MODEL_ID,
        "dayColumn": Col.EVAL_DATE,
        "textColumns": [Col.EXAMPLE_ID, Col.PROMPT, REFERENCE, Col.OUTPUT],
        "n": WORST_N,
        "table": rows_table(example_rows(data)),
    }


def _body(data: DashboardData, spec: dict[str, Any]) -> str:
    """Controls, charts, leaderboard and examples (filled by the script)."""
    all_days, shown = days(data), models(data)
    baseline = (
        f"The baseline is <strong>{escape(data.baseline)}</strong>: the comparison and slice "
        "views show each other model's paired difference to it on the same examples (the "
        "tests metric_slices holds), never one model against another."
        if data.baseline
        else "No baseline model is set: the comparison and slice views need one."
    )
    return (
        f'<p class="meta">Latest day: {all_days[-1]}; {len(all_days)} day(s), '
        f"{len(shown)} model(s).</p><p>{baseline}</p>"
        f'<div id="controls"><div id="{MODELS_ELEMENT}"><span class="group-name">Models'
        f'</span></div><div id="{CHOICES_ELEMENT}"></div></div>'
        f'<div id="{CHARTS_ID}" role="figure" aria-label="Charts"></div>'
        f"<h2>Leaderboard</h2>{_leaderboard(data)}"
        f"<h2>Worst examples</h2><p>The {WORST_N} worst examples of each checked model on "
        "the chosen day, by the first quality metric the day has (ranked by), lowest "
        "first where higher is better. Search filters them by prompt, reference, output "
        f'or id.</p><div id="{SEARCH_ELEMENT}"></div><p id="{EXAMPLES_COUNT_ID}" '
        f'class="meta"></p><table class="worst"><thead></thead>'
        f'<tbody id="{EXAMPLES_ID}"></tbody></table>'
        f'<script type="application/json" id="{SPEC_ID}">{script_json(spec)}</script>'
        f'<script type="application/json" id="{CONFIG_ID}">{script_json(_config(data))}'
        "</script>"
    )


def render_dashboard(data: DashboardData, *, title: str, generated_at: str) -> str:
    """The dashboard as one self-contained HTML page (see the module's docstring); a
    page that says so when there are no metric aggregates."""
    spec = dashboard_spec(data)
    scripts = [] if spec is None else [vega_bundle(), APP_SCRIPT]
    body = f'<p class="empty">{EMPTY_NOTE}</p>' if spec is None else _body(data, spec)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp(scripts)}">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">Generated at {escape(generated_at)}</p>'
        f"{body}{''.join(f'<script>{s}</script>' for s in scripts)}</body></html>\n"
    )
