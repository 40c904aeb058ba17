"""Fit the hallucination calibration (``core/metrics/calibration.py``) on the development
part of the project's labelled data and write its constants:

    .venv/bin/python -m llm_eval_pipeline.fit_calibration

An L2-regularised logistic regression (Newton's method) of "fabricated" on the lexical
components of each labelled answer, scored as the pipeline scores it (the question as
prompt, the passage as context, the reference when there is one). The test part is
never read here.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np

from llm_eval_pipeline.core.metrics.calibration import CONSTANTS, FEATURES, features
from llm_eval_pipeline.core.metrics.hallucination import hallucination_components
from llm_eval_pipeline.core.validation import precision_recall, roc_auc
from llm_eval_pipeline.data import DEV, FABRICATED, labelled_rows

L2 = 0.1
"""Penalty on the coefficients (not the intercept): keeps them finite on separable data."""
THRESHOLD = 0.5
"""``hallucinated`` flags an answer more likely fabricated than not."""


def design(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Features (with a leading 1 for the intercept) and labels of labelled rows: each
    row scored without its reference, and again with it where it has one, so that one
    calibration serves both settings."""
    x, y = [], []
    for row in rows:
        settings = [[], [row["reference"]]] if row.get("reference") else [[]]
        for refs in settings:
            parts = hallucination_components(row["answer"], row["question"], row["context"], refs)
            x.append([1.0, *features(parts)])
            y.append(row["label"] == FABRICATED)
    return np.asarray(x), np.asarray(y, dtype="float64")


def _newton(x: np.ndarray, y: np.ndarray, l2: float, steps: int) -> np.ndarray:
    b = np.zeros(x.shape[1])
    penalty = np.diag([0.0, *([l2] * (x.shape[1] - 1))])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-x @ b))
        gradient = x.T @ (y - p) - penalty @ b
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        b += step
        if np.abs(step).max() < 1e-10:
            break
    return b


MONOTONE = tuple(name != "reference_free" for name in FEATURES)
"""Which coefficients may not be negative: every component counts signs of fabrication,
so more of one never lowers the probability (a negative weight fitted on one set, e.g.
because its faithful answers paraphrase with words of their own, would turn an
unsupported addition into evidence of faithfulness elsewhere). ``reference_free`` is an
offset and may take either sign."""


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50,
    monotone: tuple[bool, ...] = MONOTONE,
) -> np.ndarray:  # fmt: skip
    """Coefficients (intercept first) maximising the log-likelihood minus l2·|b|²/2, with
    the ``monotone`` features' coefficients kept at 0 or above: a feature whose
    unconstrained coefficient comes out negative is dropped (fixed at 0) and the rest
    refitted, until none is (an active-set solution of the constrained problem)."""
    free = np.ones(x.shape[1], dtype=bool)
    while True:
        b = np.zeros(x.shape[1])
        b[free] = _newton(x[:, free], y, l2, steps)
        negative = [i + 1 for i, m in enumerate(monotone) if m and free[i + 1] and b[i + 1] < 0]
        if not negative:
            return b
        free[min(negative, key=lambda i: b[i])] = False


def main() -> None:
    rows = labelled_rows(DEV)
    x, y = design(rows)
    b = fit_logistic(x, y)
    p = 1.0 / (1.0 + np.exp(-x @ b))
    flagged = precision_recall(p, y.astype(bool), THRESHOLD)
    CONSTANTS.write_text(
        json.dumps(
            {
                "features": list(FEATURES),
                "intercept": round(float(b[0]), 6),
                "coefficients": [round(float(v), 6) for v in b[1:]],
                "threshold": THRESHOLD,
                "l2": L2,
                "fitted_on": f"llm_eval_pipeline/data, part {DEV}: {len(rows)} rows, "
                f"{len(y)} scorings (with and without references)",
                "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "script": "python -m llm_eval_pipeline.fit_calibration",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"fitted on {len(rows)} {DEV} rows ({len(y)} scorings); wrote {CONSTANTS}")
    for name, value in zip(["intercept", *FEATURES], b, strict=True):
        print(f"  {name:<28}{value:+.3f}")
    print(
        f"{DEV} scorings: ROC AUC {roc_auc(p, y.astype(bool)):.3f}; at {THRESHOLD}: precision "
        f"{flagged.precision:.3f}, recall {flagged.recall:.3f}"
    )


if __name__ == "__main__":
    main()
