"""Exact match and token F1 follow the SQuAD v1.1 official rules."""

import pytest

from llm_eval_pipeline.core.metrics.squad import (
    best_over_references,
    exact_match,
    normalize_answer,
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
