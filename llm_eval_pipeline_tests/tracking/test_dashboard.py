"""The dashboard's data preparation (worst examples, win/tie/loss, chart rows) and its
page as text: the strict CSP, the JSON that cannot close its element, no external URL,
an empty page. ``test_dashboard_browser.py`` opens the page in Chromium."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.aggregate import Verdict
from llm_eval_pipeline.core.schema import Agg, Col, Slc
from llm_eval_pipeline.core.slices import ALL
from llm_eval_pipeline.tracking import dashboard as page_module
from llm_eval_pipeline.tracking.dashboard import (
    APP_SCRIPT,
    CONFIG_ID,
    EMPTY_NOTE,
    SPEC_ID,
    render_dashboard,
    script_hash,
    script_json,
)
from llm_eval_pipeline.tracking.dashboard_charts import MODEL_SIGNAL, dashboard_spec
from llm_eval_pipeline.tracking.dashboard_data import (
    DECIDED,
    EXAMPLE_COLUMNS,
    GAIN,
    LOSS,
    RANKED_BY,
    REFERENCE,
    REGRESSED,
    REGRESSED_ALL,
    SLICE,
    TIE,
    WIN,
    DashboardData,
    digest_examples,
    gain,
    slice_rows,
    trend_rows,
    win_tie_loss,
    worst_candidates,
    worst_examples,
)
from llm_eval_pipeline_tests.tracking.dashboard_tables import (
    BASE,
    CAND,
    CORRECTNESS,
    DAYS,
    HALLUCINATION,
    MODELS,
    OTHER,
    PLANTED,
    PLANTED_SLICE,
    aggregates,
    dashboard_data,
    drift,
    example_table,
    slices,
)

NAN = math.nan
DAY = DAYS[0]


def table(ids: list[str], **metrics: list[float]) -> pd.DataFrame:
    """A day×model example table with the given metric values."""
    return pd.DataFrame({
        Col.EXAMPLE_ID: ids, Col.PROMPT: [f"p {i}" for i in ids],
        Col.REFERENCES: [[f"r {i}", "alt"] for i in ids], Col.OUTPUT: [f"o {i}" for i in ids],
        Col.EVAL_DATE: DAY, Col.MODEL_ID: CAND, **metrics,
    })  # fmt: skip


# ---------------------------------------------------------------- worst examples


def test_worst_examples_are_the_lowest_where_higher_is_better() -> None:
    frame = table(["e3", "e1", "e2", "e0"], **{CORRECTNESS: [0.5, NAN, 0.1, 0.1]})
    worst = worst_examples(frame, n=3)
    assert list(worst[Col.EXAMPLE_ID]) == ["e0", "e2", "e3"]  # ties by id; NaN last
    assert set(worst[RANKED_BY]) == {CORRECTNESS}
    assert list(worst.columns) == [*EXAMPLE_COLUMNS, CORRECTNESS]
    assert list(worst[REFERENCE]) == ["r e0", "r e2", "r e3"]  # the first reference


def test_worst_examples_are_the_highest_where_lower_is_better() -> None:
    # answer_correctness has no value: the next metric with a direction ranks
    frame = table(["a", "b", "c"], **{CORRECTNESS: [NAN] * 3, HALLUCINATION: [0.2, 0.9, 0.5]})
    worst = worst_examples(frame, n=2)
    assert list(worst[Col.EXAMPLE_ID]) == ["b", "c"]
    assert set(worst[RANKED_BY]) == {HALLUCINATION}
    assert CORRECTNESS not in worst  # no value to show


def test_worst_examples_without_a_metric_or_rows() -> None:
    frame = table(["b", "a"])
    frame[Col.REFERENCES] = [np.array(["first", "second"]), None]
    worst = worst_examples(frame, n=5)
    assert list(worst[Col.EXAMPLE_ID]) == ["a", "b"] and worst[RANKED_BY].isna().all()
    assert list(worst[REFERENCE]) == ["", "first"]
    empty = worst_examples(pd.DataFrame())
    assert empty.empty and list(empty.columns) == list(EXAMPLE_COLUMNS)


def test_the_candidates_of_batches_hold_the_worst_of_the_whole() -> None:
    """Ranking the union of each batch's candidates gives the whole table's worst rows,
    ties at the cut included (many zeros, a few NaN), in both directions and without a
    metric: what the dashboard reads of a large partition."""
    rng = np.random.default_rng(4)
    ids = [f"e{i:04d}" for i in rng.permutation(600)]
    scores = np.where(rng.random(600) < 0.3, 0.0, rng.uniform(0, 1, 600))
    scores[rng.random(600) < 0.05] = np.nan
    for frame in (
        table(ids, **{CORRECTNESS: scores}),
        table(ids, **{HALLUCINATION: scores}),
        table(ids),
    ):
        by = (
            CORRECTNESS
            if CORRECTNESS in frame
            else HALLUCINATION
            if HALLUCINATION in frame
            else None
        )
        batches = [frame.iloc[i : i + 64] for i in range(0, len(frame), 64)]
        kept = pd.concat([b.iloc[worst_candidates(b, by, 20)] for b in batches])
        assert len(kept) < len(frame)
        assert list(worst_examples(kept, 20)[Col.EXAMPLE_ID]) == list(
            worst_examples(frame, 20)[Col.EXAMPLE_ID]
        )


# ---------------------------------------------------------------- win / tie / loss


def test_win_tie_loss_pairs_by_example_and_follows_the_direction() -> None:
    ours = table(["a", "b", "c", "d", "e"], **{
        CORRECTNESS: [0.9, 0.5, 0.5 + 1e-12, 0.1, NAN],
        HALLUCINATION: [0.9, 0.5, 0.5, 0.1, 0.3],
    })  # fmt: skip
    base = table(["e", "d", "c", "b", "a", "z"], **{
        CORRECTNESS: [0.0, 0.2, 0.5, 0.5, 0.1, 0.0],
        HALLUCINATION: [0.3, 0.2, 0.5, 0.5, 0.1, 0.0],
    })  # fmt: skip
    counts = win_tie_loss(ours, base).set_index(Agg.METRIC)
    # correctness (higher better): a wins, b and c (within 1e-9) tie, d loses, e unpaired
    assert counts.loc[CORRECTNESS, [WIN, TIE, LOSS]].tolist() == [1, 2, 1]
    # hallucination (lower better): a loses, b c e tie, d wins
    assert counts.loc[HALLUCINATION, [WIN, TIE, LOSS]].tolist() == [1, 3, 1]
    assert set(counts[Col.MODEL_ID]) == {CAND}
    assert win_tie_loss(ours, pd.DataFrame()).empty


def test_digest_loads_one_day_model_at_a_time_and_keeps_the_worst() -> None:
    loads: list[tuple[object, str]] = []

    def load(day, model):
        loads.append((day, model))
        return example_table(day, model)

    partitions = [(DAYS[0], list(MODELS)), (DAYS[1], [CAND])]  # no baseline on day 2
    worst, outcomes = digest_examples(partitions, load, BASE, n=2)
    assert loads == [(DAYS[0], BASE), (DAYS[0], CAND), (DAYS[0], OTHER), (DAYS[1], CAND)]
    assert worst.groupby([Col.EVAL_DATE, Col.MODEL_ID]).size().tolist() == [2, 2, 2, 2]
    assert set(zip(outcomes[Col.EVAL_DATE], outcomes[Col.MODEL_ID], strict=True)) == {
        (DAYS[0], CAND), (DAYS[0], OTHER)  # the baseline against itself: nothing
    }  # fmt: skip
    sums = outcomes[[WIN, TIE, LOSS]].sum(axis=1)
    assert (sums == 6).all()  # every example paired once per metric


# ---------------------------------------------------------------- chart rows


def test_gain_is_positive_when_better_whichever_the_direction() -> None:
    assert gain(CORRECTNESS, 0.1, 0.5) == pytest.approx(0.2)
    assert gain(HALLUCINATION, 0.1, 0.5) == pytest.approx(-0.2)
    assert gain("reference_perplexity", math.log(2), 10.0) == pytest.approx(-1.0)  # ratio 2
    assert math.isnan(gain("output_tokens", 1.0, 2.0))  # no better direction


def test_trend_rows_mark_the_planted_regression() -> None:
    rows = trend_rows(dashboard_data())
    marked = rows[rows[REGRESSED].map(len) > 0]
    assert len(marked) == 1
    (row,) = marked.to_dict("records")
    assert (row[Col.MODEL_ID], row[Agg.METRIC], row[Col.EVAL_DATE]) == (
        CAND, CORRECTNESS, str(DAYS[-1])
    )  # fmt: skip
    assert row[REGRESSED] == ["=".join(PLANTED_SLICE)] and not row[REGRESSED_ALL]
    assert "latency_ms" not in set(rows[Agg.METRIC])  # a data-view metric


def test_slice_rows_leave_inconclusive_cells_undecided() -> None:
    rows = slice_rows(dashboard_data())
    assert BASE not in set(rows[Col.MODEL_ID])  # no difference to itself
    inconclusive = rows[Slc.VERDICT] == Verdict.INCONCLUSIVE
    assert inconclusive.any() and not rows.loc[inconclusive, DECIDED].any()
    assert rows.loc[~inconclusive, DECIDED].all()
    planted = rows[rows[Slc.VERDICT] == Verdict.REGRESSION]
    assert list(planted[SLICE]) == ["=".join(PLANTED_SLICE)] and (planted[GAIN] < 0).all()
    assert ALL in set(rows[SLICE])


def expressions(spec: object) -> list[str]:
    """Every Vega expression in ``spec``: filters, condition tests, exprs, calculates."""
    if isinstance(spec, list):
        return [e for item in spec for e in expressions(item)]
    if not isinstance(spec, dict):
        return []
    found = [v for k, v in spec.items() if k in ("filter", "test", "expr", "calculate")]
    found = [v for v in found if isinstance(v, str)]
    return found + [e for v in spec.values() for e in expressions(v)]


def test_model_names_never_enter_an_expression() -> None:
    name = 'it\'s "odd" <b>'
    frame = aggregates()
    frame[Col.MODEL_ID] = frame[Col.MODEL_ID].replace(OTHER, name)
    data = DashboardData(frame, slices(), drift(), pd.DataFrame(), pd.DataFrame(), BASE)
    spec = dashboard_spec(data)
    found = expressions(spec)
    assert len(found) > 10 and not any("odd" in e for e in found)
    assert name in spec["vconcat"][0]["encoding"]["color"]["scale"]["domain"]  # data, fine
    checks = [p for p in spec["params"] if p["name"].startswith(MODEL_SIGNAL.format(""))]
    assert [p["bind"]["name"] for p in checks] == [f"{BASE} (baseline)", CAND, name]


# ---------------------------------------------------------------- the page


def test_script_json_cannot_close_its_element() -> None:
    value = {"output": "</script><script>alert(1)</script><!-- & -->", "n": 1.5}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def page_html() -> str:
    return render_dashboard(dashboard_data(), title="LLM eval <nightly>", generated_at="now")


def test_the_csp_allows_exactly_the_pages_scripts_by_hash() -> None:
    html = page_html()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert csp.startswith("default-src 'none'; script-src 'sha256-")
    assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(inline) == 2 and inline[1] == APP_SCRIPT
    assert sorted(re.findall(r"'sha256-[^']+'", csp)) == sorted(script_hash(s) for s in inline)
    assert "vegaEmbed" in inline[0] and "expressionInterpreter" in inline[0]
    assert "ast: true" in APP_SCRIPT and "actions: false" in APP_SCRIPT


def test_data_goes_in_as_json_and_text_is_escaped() -> None:
    html = page_html()
    assert html.count("<script") == 4 and html.count("</script>") == 4
    assert PLANTED not in html and "<title>LLM eval &lt;nightly&gt;</title>" in html
    config = re.search(rf'<script type="application/json" id="{CONFIG_ID}">(.*?)</script>',
                       html).group(1)  # fmt: skip
    rows = json.loads(config)["table"]["rows"]
    assert any(PLANTED in row for row in rows)
    spec = re.search(rf'<script type="application/json" id="{SPEC_ID}">(.*?)</script>', html)
    assert json.loads(spec.group(1))["datasets"]
    assert all(f'data-model="{m}"' in html for m in MODELS)  # the leaderboard's columns


def test_the_page_has_no_external_url() -> None:
    html = page_html()
    markup = re.sub(r"<script.*?</script>", "", html, flags=re.DOTALL)
    assert not re.search(r"""(src|href)\s*=""", markup, re.IGNORECASE)
    assert "://" not in markup and "@import" not in markup


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(),
        aggregates().iloc[:0],
        aggregates().assign(**{Agg.METRIC: "output_tokens"}),
        aggregates().assign(**{Agg.MEAN: NAN}),
    ],
    ids=["no-columns", "no-rows", "no-shown-metric", "only-nan"],
)
def test_no_data_renders_a_page_that_says_so(frame: pd.DataFrame) -> None:
    data = DashboardData(frame, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    html = render_dashboard(data, title="t", generated_at="now")
    assert EMPTY_NOTE in html and "<script" not in html
    assert "script-src 'none'" in html and html.rstrip().endswith("</html>")


def test_a_single_day_without_baseline_slices_or_drift_renders() -> None:
    frame = aggregates()
    frame = frame[frame[Col.EVAL_DATE] == DAYS[0]]
    data = DashboardData(frame, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    spec = dashboard_spec(data)
    assert spec is not None and set(spec["datasets"]) == {"trend", "ops"}
    assert "No baseline model is set" in render_dashboard(data, title="t", generated_at="now")


def test_the_vega_bundle_is_built_once() -> None:
    assert page_module.vega_bundle() is page_module.vega_bundle()
