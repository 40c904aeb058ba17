"""The dashboard's charts: one Vega-Lite spec (built with Altair) whose views share the
page's controls, its data inlined as named datasets.

Controls are Vega-Lite params bound to inputs: a checkbox per model, the chosen metric,
slice, day and compared model (selects), a search text (read by the examples table of
the page) and a date range brushed on the overview. Every view filters on them, so the
whole page follows one set of choices. Model names never enter an expression: a row
carries its model's index and the checkboxes are looked up by it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.schema import Agg, Col, Drift, Slc
from llm_eval_pipeline.core.slices import ALL
from llm_eval_pipeline.tracking.dashboard_data import (
    BASELINE_ROLE,
    COUNT_ONLY,
    DAY,
    DECIDED,
    DRIFTED,
    GAIN,
    INTERVAL,
    LABEL,
    MODEL_INDEX,
    MODEL_ROLE,
    OPS_METRICS,
    OUTCOME,
    OUTCOMES,
    PAIRS,
    REGRESSED,
    REGRESSED_ALL,
    ROLE,
    SLICE,
    STABLE,
    STATUS,
    TREND_METRICS,
    DashboardData,
    days,
    drift_rows,
    metric_label,
    models,
    ops_rows,
    outcome_rows,
    present,
    slice_rows,
    slices_of,
    trend_rows,
)

# Signals (Vega-Lite params) the page's script reads too.
METRIC_SIGNAL = "chosen_metric"
SLICE_SIGNAL = "chosen_slice"
DAY_SIGNAL = "chosen_day"
COMPARE_SIGNAL = "chosen_model"
SEARCH_SIGNAL = "search"
BRUSH = "date_range"
MODEL_SIGNAL = "show_model_{}"
"""One boolean per model, by its index in :func:`dashboard_data.models`."""

# Where the inputs go (elements of the page).
MODELS_ELEMENT, CHOICES_ELEMENT, SEARCH_ELEMENT = "ctl-models", "ctl-choices", "ctl-search"

TREND, OPS, SLICES, OUTCOME_DATA, DRIFT = "trend", "ops", "slices", "outcomes", "drift"
"""Names of the inlined datasets."""

REGRESSION_COLOR = "#c62828"
VERDICT_COLORS = {
    Verdict.REGRESSION: REGRESSION_COLOR,
    Verdict.IMPROVEMENT: "#2e7d32",
    Verdict.NO_CHANGE: "#616161",
    Verdict.INCONCLUSIVE: "#bdbdbd",
}
OUTCOME_COLORS = ("#2e7d32", "#bdbdbd", REGRESSION_COLOR)
STATUS_COLORS = {DRIFTED: REGRESSION_COLOR, STABLE: "#2e7d32", COUNT_ONLY: "#9e9e9e"}
SMALL_W, SMALL_H, WIDE_W, DIFF_W, COLUMNS = 250, 130, 820, 260, 3
UNDECIDED_COLOR = "#cfcfcf"
CHOSEN_SLICE_MARK = "chosen_slice_outline"
TREND_POINTS_MARK = "trend_points"
"""Names of the heat map's outline of the chosen slice and of the trends' points (their
SVG groups' classes begin with them)."""


def _lit(value: str) -> str:
    """A constant of ours as a Vega expression string literal."""
    return json.dumps(value)


def _jsonable(value: Any) -> Any:
    """A cell as JSON: NaN and missing as null, numbers to 6 significant digits."""
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return str(value)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``frame``'s rows as JSON-ready dicts (see :func:`_jsonable`)."""
    columns = [str(c) for c in frame.columns]
    return [
        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def rows_table(frame: pd.DataFrame) -> dict[str, Any]:
    """``frame`` as ``{"columns": [...], "rows": [[...], ...]}`` (JSON-ready)."""
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [[_jsonable(v) for v in row] for row in frame.itertuples(index=False, name=None)],
    }


def _x_day(title: str | None = None) -> alt.X:
    return alt.X(
        f"{Col.EVAL_DATE}:T",
        title=title,
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(
            format="%b %d",
            labelAngle=0,
            tickCount={"interval": "day", "step": 1},
            labelOverlap=True,
        ),
    )


def _model_color(shown: list[str]) -> alt.Color:
    return alt.Color(f"{Col.MODEL_ID}:N", scale=alt.Scale(domain=shown), title="model")


def _dash() -> alt.StrokeDash:
    return alt.StrokeDash(
        f"{ROLE}:N",
        scale=alt.Scale(domain=[MODEL_ROLE, BASELINE_ROLE], range=[[1, 0], [6, 3]]),
        title="line",
    )


def _stroke_width() -> dict[str, Any]:
    """Thicker for the baseline."""
    return alt.condition(f"datum.{ROLE} == {_lit(BASELINE_ROLE)}", alt.value(3), alt.value(1.5))


def _model_filter(count: int) -> str:
    """True for rows of a checked model."""
    return f"[{', '.join(MODEL_SIGNAL.format(i) for i in range(count))}][datum.{MODEL_INDEX}]"


def _value_tooltip() -> list[alt.Tooltip]:
    return [
        alt.Tooltip(f"{Col.MODEL_ID}:N", title="model"),
        alt.Tooltip(f"{DAY}:N", title="day"),
        alt.Tooltip(f"{Agg.METRIC}:N", title="metric"),
        alt.Tooltip(f"{Agg.MEAN}:Q", title="mean", format=".4~g"),
        alt.Tooltip(f"{INTERVAL}:N", title="95% interval"),
        alt.Tooltip(f"{Agg.COUNT}:Q", title="n"),
    ]


def _controls(data: DashboardData, metrics: list[str], slices: list[str], compared: list[str]):
    """The params bound to the page's inputs."""
    shown, all_days = models(data), days(data)
    checks = [
        alt.param(
            name=MODEL_SIGNAL.format(i),
            value=True,
            bind=alt.binding_checkbox(
                name=f"{m} (baseline)" if m == data.baseline else m, element=f"#{MODELS_ELEMENT}"
            ),
        )
        for i, m in enumerate(shown)
    ]
    choices = f"#{CHOICES_ELEMENT}"

    def select(name: str, label: str, options: list[str], value: str) -> alt.Parameter:
        bind = alt.binding_select(options=options, name=label, element=choices)
        return alt.param(name=name, value=value, bind=bind)

    params = [
        *checks,
        select(METRIC_SIGNAL, "metric", metrics, metrics[0]),
        select(SLICE_SIGNAL, "slice", slices, slices[0]),
        select(DAY_SIGNAL, "day", all_days, all_days[-1]),
    ]
    if compared:
        params.append(select(COMPARE_SIGNAL, "model compared", compared, compared[0]))
    search = alt.binding(
        input="text", name="search examples", element=f"#{SEARCH_ELEMENT}",
        placeholder="text in a prompt, reference or output",
    )  # fmt: skip
    params.append(alt.param(name=SEARCH_SIGNAL, value="", bind=search))
    return params


def _overview(shown: list[str], brush: alt.Parameter) -> alt.Chart:
    """The chosen metric over all days, to brush a date range on."""
    return (
        alt.Chart(alt.Data(name=TREND))
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=_x_day(),
            y=alt.Y(f"{Agg.MEAN}:Q", scale=alt.Scale(zero=False), title=None),
            color=_model_color(shown),
            strokeDash=_dash(),
            tooltip=_value_tooltip(),
        )
        .transform_filter(f"datum.{Agg.METRIC} == {METRIC_SIGNAL}")
        .transform_filter(_model_filter(len(shown)))
        .add_params(brush)
        .properties(
            width=WIDE_W,
            height=110,
            title=alt.Title(
                alt.ExprRef(f"'Date range: drag across this chart (' + {METRIC_SIGNAL} + ')'"),
                subtitle="Every chart below keeps to the days brushed here; double-click clears.",
                anchor="start",
            ),
        )
    )


def _trends(shown: list[str], metrics: list[str], brush: alt.Parameter) -> alt.FacetChart:
    """Per metric: each checked model's daily mean with its 95% interval as a band, the
    baseline dashed, days with a regression on the chosen slice or ``all`` marked."""
    x, y = _x_day(), alt.Y(f"{Agg.MEAN}:Q", scale=alt.Scale(zero=False), title=None)
    color = _model_color(shown)
    band = (
        alt.Chart()
        .mark_area(opacity=0.15)
        .encode(x=x, y=alt.Y(f"{Agg.CI_LOW}:Q", title=None), y2=f"{Agg.CI_HIGH}:Q", color=color)
    )
    line = (
        alt.Chart()
        .mark_line()
        .encode(x=x, y=y, color=color, strokeDash=_dash(), strokeWidth=_stroke_width())
    )
    # A regression that day (slice all or the chosen one): a big red-rimmed diamond.
    regressed = f"datum.{REGRESSED_ALL} || indexof(datum.{REGRESSED}, {SLICE_SIGNAL}) >= 0"
    points = (
        alt.Chart()
        .mark_point(filled=True, strokeWidth=2.5)
        .encode(
            x=x,
            y=y,
            color=color,
            shape=alt.condition(regressed, alt.value("diamond"), alt.value("circle")),
            size=alt.condition(regressed, alt.value(190), alt.value(28)),
            stroke=alt.condition(regressed, alt.value(REGRESSION_COLOR), alt.value(None)),
            tooltip=[
                *_value_tooltip(),
                alt.Tooltip(f"{REGRESSED}:N", title="regression vs the baseline on"),
            ],
        )
        .properties(name=TREND_POINTS_MARK)
    )
    labels = [metric_label(m) for m in metrics]
    return (
        alt.layer(band, line, points, data=alt.Data(name=TREND))
        .transform_filter(_model_filter(len(shown)))
        .transform_filter(brush)
        .properties(width=SMALL_W, height=SMALL_H)
        .facet(
            facet=alt.Facet(f"{LABEL}:N", sort=labels, title=None),
            columns=COLUMNS,
            title=alt.Title(
                "Trends: daily mean and 95% interval per model",
                subtitle="Dashed and thicker: the baseline. Red diamond: a regression against "
                "the baseline that day on the slice all or the chosen slice.",
                anchor="start",
            ),
        )
        .resolve_scale(y="independent")
    )


def _differences(y_field: str, y_order: list[str], title: str, subtitle: str) -> alt.LayerChart:
    """Paired differences to the baseline with their 95% intervals, by ``y_field``."""
    y = alt.Y(f"{y_field}:N", sort=y_order, title=None)
    verdict = alt.Color(
        f"{Slc.VERDICT}:N",
        scale=alt.Scale(domain=list(VERDICT_COLORS), range=list(VERDICT_COLORS.values())),
        title="verdict",
        legend=alt.Legend(orient="bottom", direction="horizontal"),
    )
    tooltip = [
        alt.Tooltip(f"{Col.MODEL_ID}:N", title="model"),
        alt.Tooltip(f"{DAY}:N", title="day"),
        alt.Tooltip(f"{SLICE}:N", title="slice"),
        alt.Tooltip(f"{Agg.METRIC}:N", title="metric"),
        alt.Tooltip(f"{Slc.DIFF}:Q", title="difference", format=".4~g"),
        alt.Tooltip(f"{Slc.DIFF_CI_LOW}:Q", title="interval low", format=".4~g"),
        alt.Tooltip(f"{Slc.DIFF_CI_HIGH}:Q", title="interval high", format=".4~g"),
        alt.Tooltip(f"{Slc.Q_VALUE}:Q", title="q-value", format=".3~g"),
        alt.Tooltip(f"{Slc.VERDICT}:N", title="verdict"),
        alt.Tooltip(f"{Agg.COUNT}:Q", title="n"),
    ]
    x = alt.X(f"{Slc.DIFF}:Q", title="model − baseline")
    rule = (
        alt.Chart()
        .mark_rule(strokeWidth=2)
        .encode(
            x=alt.X(f"{Slc.DIFF_CI_LOW}:Q", title="model − baseline"),
            x2=f"{Slc.DIFF_CI_HIGH}:Q",
            y=y,
            color=verdict,
        )
    )
    point = (
        alt.Chart()
        .mark_point(filled=True, size=50)
        .encode(x=x, y=y, color=verdict, tooltip=tooltip)
    )
    text = (
        alt.Chart()
        .mark_text(align="left", fontSize=10)
        .encode(x=alt.value(DIFF_W + 8), y=y, text=f"{LABEL}:N", color=verdict)
    )
    zero = alt.Chart().mark_rule(color="#424242", strokeDash=[3, 3]).encode(x=alt.datum(0))
    return alt.layer(zero, rule, point, text, data=alt.Data(name=SLICES)).properties(
        width=DIFF_W, title=alt.Title(title, subtitle=subtitle, anchor="start")
    )


def _compare_filter() -> str:
    return f"datum.{DAY} == {DAY_SIGNAL} && datum.{Col.MODEL_ID} == {COMPARE_SIGNAL}"


def _compare(
    data: DashboardData, metrics: list[str], slices: list[str], has_outcomes: bool
) -> alt.HConcatChart | alt.VConcatChart:
    """The chosen model against the baseline on the chosen day."""
    vs = f"the baseline {data.baseline}" if data.baseline else "the baseline"
    per_metric = _differences(
        Agg.METRIC, metrics, f"Paired difference to {vs}, per metric (slice all)",
        "chosen model and day; bar: 95% interval; label: verdict and BH q-value",
    ).transform_filter(f"{_compare_filter()} && datum.{SLICE} == {_lit(ALL)}")  # fmt: skip
    per_slice = _differences(
        SLICE, slices, f"Paired difference to {vs}, per slice (chosen metric)",
        "chosen model, day and metric",
    ).transform_filter(f"{_compare_filter()} && datum.{Agg.METRIC} == {METRIC_SIGNAL}")  # fmt: skip
    views: list[alt.TopLevelMixin] = [per_metric, per_slice]
    if has_outcomes:
        views.append(
            alt.Chart(alt.Data(name=OUTCOME_DATA))
            .mark_bar()
            .encode(
                y=alt.Y(f"{Agg.METRIC}:N", sort=metrics, title=None),
                x=alt.X(f"{PAIRS}:Q", stack="normalize", title="share of paired examples"),
                color=alt.Color(
                    f"{OUTCOME}:N",
                    scale=alt.Scale(domain=list(OUTCOMES), range=list(OUTCOME_COLORS)),
                    sort=list(OUTCOMES),
                    title="examples",
                ),
                order=alt.Order(f"{OUTCOME}_rank:Q"),
                tooltip=[
                    alt.Tooltip(f"{Col.MODEL_ID}:N", title="model"),
                    alt.Tooltip(f"{DAY}:N", title="day"),
                    alt.Tooltip(f"{Agg.METRIC}:N", title="metric"),
                    alt.Tooltip(f"{OUTCOME}:N", title="outcome"),
                    alt.Tooltip(f"{PAIRS}:Q", title="examples"),
                ],
            )
            .transform_filter(_compare_filter())
            .transform_calculate(
                **{f"{OUTCOME}_rank": f"indexof({json.dumps(list(OUTCOMES))}, datum.{OUTCOME})"}
            )
            .properties(
                width=260,
                title=alt.Title(
                    f"Examples won, tied and lost against {vs}",
                    subtitle="per metric, by its better direction; ties within 1e-9",
                    anchor="start",
                ),
            )
        )
    pair = alt.hconcat(*views[:2]).resolve_scale(color="independent")
    if len(views) == 2:
        return pair
    return alt.vconcat(pair, views[2]).resolve_scale(color="independent")


def _heatmap(metrics: list[str], slices: list[str]) -> alt.LayerChart:
    """Metric × slice for the chosen model and day, coloured by :data:`GAIN`."""
    x = alt.X(f"{SLICE}:N", sort=slices, title=None, axis=alt.Axis(labelAngle=-40))
    y = alt.Y(f"{Agg.METRIC}:N", sort=metrics, title=None)
    cells = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.condition(
                f"datum.{DECIDED}",
                alt.Color(
                    f"{GAIN}:Q",
                    scale=alt.Scale(
                        scheme="redblue", domainMid=0, domain=[-0.25, 0.25], clamp=True
                    ),
                    title=["relative to", "the baseline", "(+ is better)"],
                    legend=alt.Legend(format="+.0%"),
                ),
                alt.value(UNDECIDED_COLOR),
            ),
            tooltip=[
                alt.Tooltip(f"{SLICE}:N", title="slice"),
                alt.Tooltip(f"{Agg.METRIC}:N", title="metric"),
                alt.Tooltip(f"{Slc.DIFF}:Q", title="difference", format=".4~g"),
                alt.Tooltip(f"{GAIN}:Q", title="relative, + better", format="+.1%"),
                alt.Tooltip(f"{Slc.VERDICT}:N", title="verdict"),
                alt.Tooltip(f"{Slc.Q_VALUE}:Q", title="q-value", format=".3~g"),
                alt.Tooltip(f"{Agg.COUNT}:Q", title="n"),
            ],
        )
    )
    chosen = (
        alt.Chart()
        .mark_rect(fill=None, stroke="#212121", strokeWidth=2.5)
        .encode(x=x, y=y)
        .transform_filter(f"datum.{SLICE} == {SLICE_SIGNAL}")
        .properties(name=CHOSEN_SLICE_MARK)
    )
    return (
        alt.layer(cells, chosen, data=alt.Data(name=SLICES))
        .transform_filter(_compare_filter())
        .properties(
            title=alt.Title(
                "Slices: difference to the baseline, chosen model and day",
                subtitle="Blue better, red worse whichever way the metric points; grey: "
                "inconclusive or no better direction; outlined: the chosen slice.",
                anchor="start",
            )
        )
    )


def _drift(brush: alt.Parameter) -> alt.Chart:
    """Input drift per day and test."""
    return (
        alt.Chart(alt.Data(name=DRIFT))
        .mark_square(size=90)
        .encode(
            x=_x_day(),
            y=alt.Y(f"{Drift.TEST}:N", title=None),
            color=alt.Color(
                f"{STATUS}:N",
                scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
                title="input drift",
            ),
            tooltip=[
                alt.Tooltip(f"{DAY}:N", title="day"),
                alt.Tooltip(f"{Drift.TEST}:N", title="test"),
                alt.Tooltip(f"{Drift.STATISTIC}:Q", title="statistic", format=".4~g"),
                alt.Tooltip(f"{Drift.P_VALUE}:Q", title="p-value", format=".3~g"),
                alt.Tooltip(f"{STATUS}:N", title="status"),
                alt.Tooltip(f"{Drift.DETAIL}:N", title="detail"),
            ],
        )
        .transform_filter(brush)
        .properties(
            width=WIDE_W,
            title=alt.Title(
                "Input drift: each day's examples against the previous day's",
                anchor="start",
            ),
        )
    )


def _ops(shown: list[str], metrics: list[str], brush: alt.Parameter) -> alt.FacetChart:
    """Cost and speed per model over the days."""
    x, y = _x_day(), alt.Y(f"{Agg.MEAN}:Q", title=None)
    line = (
        alt.Chart()
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(x=x, y=y, color=_model_color(shown), strokeDash=_dash(), tooltip=_value_tooltip())
    )
    return (
        alt.layer(line, data=alt.Data(name=OPS))
        .transform_filter(_model_filter(len(shown)))
        .transform_filter(brush)
        .properties(width=SMALL_W, height=SMALL_H)
        .facet(
            facet=alt.Facet(f"{LABEL}:N", sort=[metric_label(m) for m in metrics], title=None),
            columns=COLUMNS,
            title=alt.Title("Cost and speed per model (cost: the day's total)", anchor="start"),
        )
        .resolve_scale(y="independent")
    )


def dashboard_spec(data: DashboardData) -> dict[str, Any] | None:
    """The Vega-Lite spec of every chart, its data inlined (``datasets``); None when no
    metric aggregates are there to draw."""
    trend = trend_rows(data)
    if trend.empty:
        return None
    shown = models(data)
    metrics = present(trend, TREND_METRICS)
    sliced, outcomes = slice_rows(data), outcome_rows(data)
    slices = slices_of(sliced)
    compared = sorted(set(sliced[Col.MODEL_ID])) if len(sliced) else []
    ops, drift = ops_rows(data), drift_rows(data)
    brush = alt.selection_interval(name=BRUSH, encodings=["x"])
    views: list[Any] = [_overview(shown, brush), _trends(shown, metrics, brush)]
    datasets: dict[str, list[dict[str, Any]]] = {TREND: records(trend)}
    if compared:
        slice_metrics = present(sliced, metrics)
        views += [
            _compare(data, slice_metrics, slices, has_outcomes=len(outcomes) > 0),
            _heatmap(slice_metrics, slices),
        ]
        datasets[SLICES] = records(sliced)
        datasets[OUTCOME_DATA] = records(outcomes)
    if len(drift):
        views.append(_drift(brush))
        datasets[DRIFT] = records(drift)
    if len(ops):
        views.append(_ops(shown, present(ops, OPS_METRICS), brush))
        datasets[OPS] = records(ops)
    chart = (
        alt.vconcat(*views, spacing=36)
        .resolve_scale(color="independent", strokeDash="independent")
        .configure_view(stroke="#dddddd")
        .configure_title(fontSize=14)
        .configure_legend(orient="right")
    )
    spec = chart.to_dict()
    spec.pop("$schema", None)
    # Top-level params, given here: Altair's add_params on a concat would move them down.
    controls = _controls(data, metrics, slices, compared)
    spec["params"] = [*spec.get("params", []), *(c.param.to_dict() for c in controls)]
    spec["datasets"] = datasets
    return spec
