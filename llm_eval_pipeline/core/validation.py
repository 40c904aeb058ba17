"""How well a score separates labelled examples: ROC AUC, same-question pair accuracy,
precision and recall at a threshold, and the answer-length baseline beside them.

``positive`` marks the examples the score should rank high (e.g. hallucinated answers);
higher scores mean "more likely positive".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """The probability that a random positive scores above a random negative, ties
    counting half (the Mann-Whitney U statistic over n₊·n₋; Hanley & McNeil 1982). NaN
    without both classes. Rows whose score is NaN are left out."""
    values = np.asarray(scores, dtype="float64")
    labels = np.asarray(positive, dtype=bool)
    keep = ~np.isnan(values)
    values, labels = values[keep], labels[keep]
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):  # average ranks over ties
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class PairAccuracy:
    """Over every (positive, negative) pair of examples of the same group (question):
    the share ranked right (the positive scores higher), and the share tied."""

    pairs: int
    right: float
    ties: float


def pair_accuracy(
    scores: Sequence[float], positive: Sequence[bool], groups: Sequence[Hashable]
) -> PairAccuracy:
    by_group: dict[Hashable, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for score, label, group in zip(scores, positive, groups, strict=True):
        if not math.isnan(score):
            by_group[group][0 if label else 1].append(score)
    right = ties = pairs = 0
    for pos, neg in by_group.values():
        for p in pos:
            for n in neg:
                pairs += 1
                right += p > n
                ties += p == n
    if not pairs:
        return PairAccuracy(0, math.nan, math.nan)
    return PairAccuracy(pairs, right / pairs, ties / pairs)


@dataclass(frozen=True)
class Flagged:
    """Precision and recall of ``score >= threshold`` as the positive prediction."""

    threshold: float
    flagged: int
    precision: float
    recall: float


def precision_recall(
    scores: Sequence[float], positive: Sequence[bool], threshold: float
) -> Flagged:
    values = np.asarray(scores, dtype="float64")
    labels = np.asarray(positive, dtype=bool)
    keep = ~np.isnan(values)
    flags, labels = values[keep] >= threshold, labels[keep]
    hits = int((flags & labels).sum())
    precision = hits / int(flags.sum()) if flags.any() else math.nan
    recall = hits / int(labels.sum()) if labels.any() else math.nan
    return Flagged(threshold, int(flags.sum()), precision, recall)


def answer_length(text: str | None) -> float:
    """Words in an answer: the length-only baseline's score (NaN without an answer)."""
    return math.nan if text is None else float(len(text.split()))
