"""B1: ROUGE-1/2/L/Lsum on 10,000 pairs: the pipeline's ``rouge_scores`` (rouge-score-rs,
batched) against a plain loop over ``rouge_score.RougeScorer.score``. Scores must be
identical before they are timed.

    .venv/bin/python -m benchmarks.rouge [--repetitions 5] [--quick]
"""

from __future__ import annotations

import random
from functools import partial

from rouge_score import rouge_scorer

from benchmarks.common import Result, main_for, repeat
from llm_eval_pipeline.core.metrics.rouge import rouge_scores
from llm_eval_pipeline.core.schema import ROUGE_TYPES

WORDS = [
    "the",
    "a",
    "of",
    "model",
    "answer",
    "paris",
    "capital",
    "city",
    "river",
    "mountain",
    "wall",
    "fell",
    "in",
    "1989",
    "summary",
    "cats",
    "sleep",
    "hunt",
    "night",
    "water",
    "boils",
    "degrees",
    "celsius",
    "running",
    "quickly",
    "ran",
    "runs",
    "planet",
    "jupiter",
]


def pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))

    return [(text(), text()) for _ in range(n)]


def reference_loop(data: list[tuple[str, str]]) -> list[tuple[float, ...]]:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for prediction, reference in data:
        scores = scorer.score(reference, prediction)
        out.append(tuple(scores[t].fmeasure for t in ROUGE_TYPES))
    return out


def ours(data: list[tuple[str, str]]) -> list[tuple[float, ...]]:
    scores = rouge_scores([p for p, _ in data], [[r] for _, r in data])
    return list(zip(*(scores[t] for t in ROUGE_TYPES), strict=True))


def run(repetitions: int = 5, quick: bool = False, n_pairs: int = 10_000) -> list[Result]:
    n_pairs = 1_000 if quick else n_pairs
    data = pairs(n_pairs)
    if reference_loop(data) != ours(data):
        raise SystemExit("B1: scores differ between rouge-score and rouge_scores")
    slow, _ = repeat(partial(reference_loop, data), repetitions)
    fast, _ = repeat(partial(ours, data), repetitions)
    ratio = slow.median / fast.median
    return [
        Result(
            "B1",
            f"ROUGE 1/2/L/Lsum (F, P, R) on {n_pairs:,} pairs",
            "rouge_score.RougeScorer.score loop",
            "rouge_scores (rouge-score-rs, batched)",
            slow,
            fast,
            ratio,
            "identical scores, >= 50x",
            ratio >= 50,
            ["scores identical (==) on every pair"],
        )
    ]


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
