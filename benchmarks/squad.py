"""B2: SQuAD exact match and token F1 on 100,000 (prediction, references) rows.

The pipeline's batch function ``squad_scores`` against the SQuAD v1.1 official functions
(``normalize_answer``, ``f1_score``, ``exact_match_score``,
``metric_max_over_ground_truths``, written out below as ``evaluate-v1.1.py`` defines them)
called in a plain Python loop. The data is drawn with a seeded RNG from the demo
dataset: short QA answers and long-form (summary-like) answers, with casing changes,
ASCII and unicode punctuation, articles, unicode letters and repeated tokens; about 30%
of the rows share a token with a reference; 1-2 references per row. Both sides must give
identical floats before they are timed. Goal: identical, >= 3x faster.

    .venv/bin/python -m benchmarks.squad [--repetitions 5] [--quick]
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from functools import partial
from pathlib import Path

from benchmarks.common import Result, main_for, repeat
from llm_eval_pipeline.core.metrics.squad import squad_scores
from llm_eval_pipeline.demo import demo_dataset_path

ROWS, QUICK_ROWS = 100_000, 5_000
GOAL = 3.0


# --- the official SQuAD v1.1 evaluation functions, as evaluate-v1.1.py writes them ---
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


# --- data ---
UNICODE_SWAPS = [("e", "é"), ("a", "á"), ("o", "ö"), ("u", "ü"), ("'", "\u2019"), ("-", "\u2014")]
FILLERS = ["The answer is", "I think it is", "It's", "According to the text,", "Answer:"]
NOISE = ["Sorry, I don't know.", "N/A", "?", "", "Unknown", "“no idea”", "the", "a an the"]


def rows(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """``n`` (prediction, references) rows, deterministic for a seed."""
    records = [json.loads(line) for line in Path(demo_dataset_path()).read_text().splitlines()]
    sentences = [
        s.strip() for r in records for s in (r.get("context") or "").split(". ") if s.strip()
    ]
    answers = [a for r in records for a in r["references"]]
    rng = random.Random(seed)

    def vary(text: str) -> str:
        roll = rng.random()
        if roll < 0.2:
            text = text.upper() if rng.random() < 0.3 else text.title()
        elif roll < 0.35:
            old, new = rng.choice(UNICODE_SWAPS)
            text = text.replace(old, new, 1)
        if rng.random() < 0.3:
            text = rng.choice(["The ", "the ", "a ", "An ", '"', "(", "  "]) + text
        if rng.random() < 0.3:
            text += rng.choice([".", "!", "?", ",", '."', ")", "…", " !!", "  "])
        return text

    def long_form(words_from: str) -> str:
        text = " ".join(rng.sample(sentences, rng.randint(1, 3)))
        if words_from:
            text = f"{rng.choice(FILLERS)} {words_from}. {text}"
        if rng.random() < 0.2:  # a model repeating itself
            words = text.split()
            text = " ".join(words + words[: rng.randint(1, len(words))])
        return vary(text)

    predictions, references = [], []
    for _ in range(n):
        record = rng.choice(records)
        refs = record["references"][: rng.randint(1, 2)]
        correct = rng.random() < 0.3
        roll = rng.random()
        if record["task"] == "summarization":
            prediction = long_form("") if not correct else vary(refs[0])
            if not correct and roll < 0.5:
                prediction = vary(rng.choice(answers))
        elif roll < 0.5:
            prediction = vary(rng.choice(refs) if correct else rng.choice(answers))
        elif roll < 0.8:
            prediction = long_form(rng.choice(refs) if correct else "")
        else:
            prediction = vary(rng.choice(NOISE))
        predictions.append(prediction)
        references.append(refs)
    return predictions, references


def official_loop(predictions: list[str], references: list[list[str]]) -> tuple[list, list]:
    ems, f1s = [], []
    for prediction, refs in zip(predictions, references, strict=True):
        ems.append(float(metric_max_over_ground_truths(exact_match_score, prediction, refs)))
        f1s.append(float(metric_max_over_ground_truths(f1_score, prediction, refs)))
    return ems, f1s


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    n = QUICK_ROWS if quick else ROWS
    predictions, references = rows(n)
    expected = official_loop(predictions, references)
    got = squad_scores(predictions, references)
    for name, a, b in zip(("exact match", "token F1"), expected, got, strict=True):
        differ = sum(x != y for x, y in zip(a, b, strict=True))
        if differ:
            raise SystemExit(f"B2: {name} differs from the official functions on {differ} rows")
    slow, _ = repeat(partial(official_loop, predictions, references), repetitions)
    fast, _ = repeat(partial(squad_scores, predictions, references), repetitions)
    ratio = slow.median / fast.median
    distinct = len(set(predictions) | {r for refs in references for r in refs})
    return [
        Result(
            id="B2",
            title=f"SQuAD exact match + token F1 on {n:,} rows, {repetitions} repetitions",
            baseline_label="official v1.1 functions, loop",
            ours_label="squad_scores (batch)",
            baseline=slow,
            ours=fast,
            ratio=ratio,
            goal=f"identical, >= {GOAL:.0f}x",
            met=ratio >= GOAL,
            notes=[
                "identical floats on every row (checked before timing)",
                f"{sum(len(r) for r in references):,} references, {distinct:,} distinct texts; "
                f"rows sharing a token with a reference: "
                f"{sum(f > 0 for f in got[1]) / n:.0%}; exact matches: {sum(got[0]) / n:.0%}",
            ],
        )
    ]


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
