"""Exact match and token F1 follow the SQuAD v1.1 official rules."""

import random
import re
import string
from collections import Counter

import pytest

from llm_eval_pipeline.core.metrics.squad import (
    best_over_references,
    exact_match,
    normalize_answer,
    squad_scores,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  An   apple, a day!  ", "apple day"),
        ("Theater", "theater"),  # 'the' only as a whole word
        ("a.b.c", "abc"),  # punctuation is removed, not replaced by spaces
        ("U.S.A.", "usa"),
        ("Don't stop", "dont stop"),
        ("café — naïve", "café — naïve"),  # only ASCII punctuation is stripped
        ("", ""),
    ],
)
def test_normalisation(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("prediction", "reference", "em", "f1"),
    [
        ("Paris", "paris", 1.0, 1.0),
        ("The Paris.", "Paris", 1.0, 1.0),
        ("in Paris, France", "Paris", 0.0, 2 * (1 / 3) * 1 / (1 / 3 + 1)),
        ("Paris Paris", "Paris", 0.0, 2 * 0.5 * 1 / 1.5),  # tokens are a multiset
        ("Lyon", "Paris", 0.0, 0.0),
        ("", "Paris", 0.0, 0.0),
        ("", "", 1.0, 0.0),  # v1.1: no shared token means F1 = 0, even for two empties
        ("the", "a", 1.0, 0.0),  # both normalise to empty
    ],
)
def test_em_and_f1(prediction: str, reference: str, em: float, f1: float) -> None:
    assert exact_match(prediction, reference) == em
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_max_over_references() -> None:
    refs = ["Lyon", "the capital, Paris", "Paris"]
    assert best_over_references(exact_match, "Paris", refs) == 1.0
    # vs "capital paris": P = 1/3, R = 1/2; vs "paris": P = 1/3, R = 1 -> the best is 0.5
    assert best_over_references(token_f1, "city of Paris", refs) == pytest.approx(0.5)


def official_normalize(s: str) -> str:
    """evaluate-v1.1.py's normalize_answer, step by step as the official script writes it."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def official_f1(prediction: str, reference: str) -> float:
    pred, ref = official_normalize(prediction).split(), official_normalize(reference).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0
    precision, recall = 1.0 * same / len(pred), 1.0 * same / len(ref)
    return (2 * precision * recall) / (precision + recall)


TRICKY = [
    "The Eiffel Tower",
    "theatre",  # articles inside words stay
    "Theatre of the Absurd",
    "an anthem, a banana",
    "",
    "   ",
    "the a an",  # only articles: normalises to empty
    "café — naïve",  # unicode letters and an em dash (not removed: not ASCII)
    "“Paris”",  # curly quotes are not string.punctuation
    "the—end",  # an article next to unicode punctuation is still a whole word
    "l'the",  # ASCII apostrophe removed first: "lthe"
    "Ünïcödé THE Straße",
    "İstanbul",  # lower() lengthens the string
    "Paris Paris paris",  # repeated tokens
    "paris, paris",
    "snake_case the_end",  # "_" is punctuation
    "A\tB\nthe\u00a0C",  # tabs, newlines and a no-break space are whitespace
    "ΟΔΟΣ the",  # final sigma
    "１２３ the ½",  # unicode digits and numerics are word characters
    "U.S.A.",
    "100%",
    "\ud800 the lone surrogate",  # not valid UTF-8, still a str
]


def test_normalisation_matches_the_official_definition() -> None:
    for text in TRICKY:
        assert normalize_answer(text) == official_normalize(text), text


def test_batch_scores_equal_the_official_per_pair_functions() -> None:
    predictions, references = [], []
    for prediction in TRICKY:
        for reference in TRICKY:
            predictions.append(prediction)
            references.append([reference])
    rng = random.Random(0)
    for _ in range(300):  # several references per row, the best one counts
        predictions.append(" ".join(rng.choices(TRICKY, k=rng.randint(1, 3))))
        references.append(rng.sample(TRICKY, rng.randint(1, 4)))
    ems, f1s = squad_scores(predictions, references)
    for prediction, refs, em, f1 in zip(predictions, references, ems, f1s, strict=True):
        official_em = max(
            float(official_normalize(prediction) == official_normalize(r)) for r in refs
        )
        assert em == official_em, (prediction, refs)
        assert f1 == max(official_f1(prediction, r) for r in refs), (prediction, refs)  # exact
        assert em == best_over_references(exact_match, prediction, refs)
        assert f1 == best_over_references(token_f1, prediction, refs)


def test_batch_scores_take_the_best_reference_and_need_one() -> None:
    ems, f1s = squad_scores(
        ["Paris", "city of Paris", "", "the"],
        [["Lyon", "paris."], ["capital Paris", "Paris"], ["a"], ["", "x"]],
    )
    assert ems == [1.0, 0.0, 1.0, 1.0]
    assert f1s == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="row 1 has no reference"):
        squad_scores(["a", "b"], [["a"], []])
