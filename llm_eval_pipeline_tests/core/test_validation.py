"""The separation figures of validate-metric, and the shipped labelled data's split."""

import collections
import json
import math

import pytest

from llm_eval_pipeline.core.validation import (
    answer_length,
    pair_accuracy,
    precision_recall,
    roc_auc,
)
from llm_eval_pipeline.data import DEV, FABRICATED, TEST, labelled_rows


def test_roc_auc_counts_ties_half_and_ignores_missing_scores() -> None:
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    # positives 0.9, 0.4, 0.6 against negatives 0.4, 0.7 (the NaN row left out)
    scores = [0.9, 0.4, 0.6, 0.4, 0.7, math.nan]
    labels = [True, True, True, False, False, True]
    assert roc_auc(scores, labels) == pytest.approx((1 + 1 + 0.5 + 0 + 1 + 0) / 6)
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


def test_pairs_are_compared_within_a_group_only() -> None:
    scores = [0.9, 0.1, 0.3, 0.3, 0.0]
    labels = [True, False, True, False, True]
    groups = ["q1", "q1", "q2", "q2", "q3"]  # q3 has no negative: no pair
    found = pair_accuracy(scores, labels, groups)
    assert (found.pairs, found.right, found.ties) == (2, 0.5, 0.5)


def test_precision_and_recall_at_a_threshold() -> None:
    flagged = precision_recall([0.9, 0.6, 0.4, 0.2], [True, False, True, False], 0.5)
    assert (flagged.flagged, flagged.precision, flagged.recall) == (2, 0.5, 0.5)
    assert answer_length("three short words") == 3.0 and math.isnan(answer_length(None))


def test_the_labelled_data_splits_by_question_and_pairs_both_labels() -> None:
    rows = labelled_rows()
    assert len(rows) >= 600
    split_of_group = {}
    for row in rows:
        assert split_of_group.setdefault(row["group"], row["split"]) == row["split"]
    assert {r["split"] for r in rows} == {DEV, TEST}
    test_rows = labelled_rows(TEST)
    assert 0.25 < len(test_rows) / len(rows) < 0.45
    labels = collections.defaultdict(set)
    for row in rows:
        labels[row["group"]].add(row["label"] == FABRICATED)
    assert sum(both == {True, False} for both in labels.values()) >= 0.9 * len(labels)
    # reference-free rows on both sides, and short and sentence-long answers on both
    for label in (True, False):
        side = [r for r in rows if (r["label"] == FABRICATED) == label]
        assert sum(r["reference"] is None for r in side) >= 50
        assert sum(len(r["answer"].split()) <= 5 for r in side) >= 80
        assert sum(len(r["answer"].split()) >= 10 for r in side) >= 80


def test_a_split_is_written_as_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from llm_eval_pipeline.data.__main__ import main

    main([TEST])
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert written == labelled_rows(TEST)
