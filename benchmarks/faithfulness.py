"""B12: the scoring stage (``score_batch`` with the rouge, correctness and hallucination
groups) on the project's labelled answers, against the same stage without what the
faithfulness work added to it (``unbound_relation``, ``wrong_comparison`` and the
calibrated probability): the added parts are timed alone on the same rows and taken
off the stage's time. Goal: the stage within 1.5× of its time without them.

    .venv/bin/python -m benchmarks.faithfulness [--repetitions 5] [--quick]
"""

from __future__ import annotations

import pandas as pd

from benchmarks.common import Result, Timing, main_for, repeat
from llm_eval_pipeline.core.metrics.calibration import shipped
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.hallucination import (
    comparison_verdict,
    hallucination_components,
    unbound_relation,
)
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.core.scoring import score_batch
from llm_eval_pipeline.data import labelled_rows

GOAL = 1.5
GROUPS = ("rouge", "correctness", "hallucination")


def batch(copies: int) -> pd.DataFrame:
    """The labelled rows (with their references where they have one), ``copies`` times."""
    rows = labelled_rows() * copies
    return pd.DataFrame(
        {
            Col.EXAMPLE_ID: [str(i) for i in range(len(rows))],
            Col.PROMPT: [r["question"] for r in rows],
            Col.CONTEXT: [r["context"] for r in rows],
            Col.REFERENCES: [[r["reference"]] if r.get("reference") else [] for r in rows],
            Col.OUTPUT: [r["answer"] for r in rows],
        }
    )


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    frame = batch(1 if quick else 3)
    config = MetricConfig(groups=GROUPS)
    calibration = shipped()
    texts = list(zip(frame[Col.OUTPUT], frame[Col.PROMPT], frame[Col.CONTEXT], strict=True))
    parts = [
        hallucination_components(o, p, c, r)
        for (o, p, c), r in zip(texts, frame[Col.REFERENCES], strict=True)
    ]

    def stage() -> pd.DataFrame:
        return score_batch(frame, config)

    def added() -> None:
        for (output, prompt, context), components in zip(texts, parts, strict=True):
            unbound_relation(output, prompt, context)
            comparison_verdict(output, prompt, context)
            calibration.probability(components)

    stage()  # warm the embedding model and the caches of both sides
    ours, scored = repeat(stage, repetitions)
    extra, _ = repeat(added, repetitions)
    before = Timing([s - e for s, e in zip(ours.seconds, extra.seconds, strict=True)])
    ratio = ours.median / before.median
    met = ratio <= GOAL
    return [
        Result(
            id="B12",
            title=f"scoring stage (rouge, correctness, hallucination) on {len(frame):,} "
            "labelled answers",
            baseline_label="the stage without the additions",
            ours_label="score_batch",
            baseline=before,
            ours=ours,
            ratio=ratio,
            goal=f"≤ {GOAL}× the stage without unbound_relation, wrong_comparison and "
            "the calibrated probability (ratio shown: with / without)",
            met=met,
            notes=[
                f"the additions alone: {extra.describe()}",
                f"{int(scored['hallucinated'].sum())} of {len(scored)} answers flagged",
            ],
            shortfall=None
            if met
            else f"the additions took {extra.median:.2f} s of the stage's {ours.median:.2f} s",
        )
    ]


if __name__ == "__main__":
    main_for(run, __doc__)
