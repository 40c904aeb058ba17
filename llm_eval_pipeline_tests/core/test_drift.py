"""Input drift: each test flags a planted change and stays quiet on unchanged data, the
figures match hand computations, and the false-alarm rate on null data holds the level."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from llm_eval_pipeline.core.drift import (
    DriftTest,
    chi_square,
    drift_tests,
    embedding_shift,
    id_changes,
    ks,
    psi,
    psi_test,
    split_change,
)

COLUMNS = ["example_id", "task", "prompt", "references", "metadata"]


def examples(
    n: int = 200,
    seed: int = 0,
    qa_share: float = 0.5,
    prompt_scale: int = 1,
    fr_share: float = 0.3,
    pairs: bool = False,
) -> pd.DataFrame:
    """``n`` synthetic examples: tasks qa / summarize, prompts of 20–120 characters,
    one reference each, metadata ``lang`` (en / fr) and ``source``."""
    rng = np.random.default_rng(seed)
    tasks = np.where(rng.random(n) < qa_share, "qa", "summarize")
    lengths = rng.integers(20, 121, n) * prompt_scale
    langs = np.where(rng.random(n) < fr_share, "fr", "en")
    sources = rng.choice(["web", "books"], n)
    metadata = [
        {"lang": str(lang), "source": str(source)}
        for lang, source in zip(langs, sources, strict=True)
    ]
    return pd.DataFrame(
        {
            "example_id": [f"ex-{seed}-{i}" for i in range(n)],
            "task": tasks,
            "prompt": ["x" * int(k) for k in lengths],
            "references": [["r" * int(k)] for k in rng.integers(5, 50, n)],
            "metadata": [sorted(m.items()) for m in metadata] if pairs else metadata,
        }
    )


def by_name(tests: list[DriftTest]) -> dict[str, DriftTest]:
    return {t.test: t for t in tests}


def run(previous: pd.DataFrame, current: pd.DataFrame, **kwargs) -> dict[str, DriftTest]:
    kwargs.setdefault("slice_by", ["task", "lang"])
    kwargs.setdefault("previous_embeddings", None)
    kwargs.setdefault("current_embeddings", None)
    return by_name(drift_tests(previous, current, **kwargs))


def test_identical_days_do_not_drift() -> None:
    day = examples()
    embeddings = np.random.default_rng(1).normal(size=(len(day), 8))
    tests = run(
        day,
        day.copy(),
        slice_by=["task", "lang", "source"],
        previous_embeddings=embeddings,
        current_embeddings=embeddings.copy(),
    )
    assert set(tests) == {
        "task_mix",
        "prompt_length_psi",
        "prompt_length_ks",
        "reference_length_psi",
        "reference_length_ks",
        "metadata.lang_mix",
        "metadata.source_mix",
        "prompt_embedding_shift",
    }
    assert not [t.test for t in tests.values() if t.drifted]
    assert tests["prompt_length_psi"].statistic == 0.0
    assert tests["prompt_length_psi"].p_value == 1.0
    assert tests["task_mix"].p_value == pytest.approx(1.0)
    assert tests["prompt_embedding_shift"].statistic == 0.0
    assert tests["prompt_embedding_shift"].p_value == 1.0
    lengths = day["prompt"].str.len().to_numpy()
    assert psi(lengths, lengths) == 0.0


def test_longer_prompts_drift_in_length_not_in_task_mix() -> None:
    previous = examples(seed=0)
    current = previous.assign(prompt=previous["prompt"] * 2)
    tests = run(previous, current)
    assert tests["prompt_length_psi"].drifted
    assert tests["prompt_length_psi"].statistic > 0.2
    assert tests["prompt_length_ks"].drifted
    assert tests["prompt_length_ks"].p_value < 0.05
    assert not tests["task_mix"].drifted
    assert not tests["reference_length_ks"].drifted
    assert "PSI" in tests["prompt_length_psi"].detail
    assert "> 0.2" in tests["prompt_length_psi"].detail


def test_changed_task_mix_drifts() -> None:
    previous = examples(n=200).assign(task=["qa"] * 160 + ["summarize"] * 40)
    current = examples(n=200).assign(task=["qa"] * 40 + ["summarize"] * 160)
    tests = run(previous, current)
    task_mix = tests["task_mix"]
    assert task_mix.drifted
    # Every expected count is 100: X² = 4 × 60² / 100.
    assert task_mix.statistic == pytest.approx(144.0)
    assert task_mix.p_value == pytest.approx(stats.chi2.sf(144.0, 1))
    assert task_mix.threshold == pytest.approx(0.05)
    assert not tests["prompt_length_psi"].drifted


def test_chi_square_matches_scipy_and_edge_cases() -> None:
    previous = ["a"] * 30 + ["b"] * 50 + ["c"] * 20
    current = ["a"] * 45 + ["b"] * 35 + ["c"] * 40
    expected = stats.chi2_contingency([[30, 50, 20], [45, 35, 40]], correction=False)
    statistic, p, dof = chi_square(previous, current)
    assert statistic == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert dof == 2
    # Same proportions, different sizes.
    assert chi_square(["a", "b"] * 10, ["a", "b"] * 30)[1] == pytest.approx(1.0)
    assert chi_square(["a"] * 5, ["a"] * 9) == (0.0, 1.0, 0)
    statistic, p, dof = chi_square([], ["a", "b"])
    assert math.isnan(statistic) and math.isnan(p) and dof == 0


def test_metadata_mix_change_drifts_and_missing_counts_as_a_label() -> None:
    previous = examples(seed=0, fr_share=0.1)
    current = examples(seed=1, fr_share=0.7)
    tests = run(previous, current, slice_by=["lang", "source"])
    assert tests["metadata.lang_mix"].drifted
    assert not tests["metadata.source_mix"].drifted
    assert "task_mix" in tests and not tests["task_mix"].drifted

    half_missing = [
        {"source": m["source"]} if i % 2 else m for i, m in enumerate(previous["metadata"])
    ]
    missing = previous.assign(metadata=half_missing)
    tests = run(previous, missing, slice_by=["lang"])
    assert tests["metadata.lang_mix"].drifted
    assert tests["metadata.lang_mix"].statistic > 50


def test_metadata_as_pairs_matches_dicts() -> None:
    previous = examples(seed=0, fr_share=0.1)
    current = examples(seed=1, fr_share=0.5)
    as_dicts = run(previous, current, slice_by=["lang", "source"])
    as_pairs = run(
        examples(seed=0, fr_share=0.1, pairs=True),
        examples(seed=1, fr_share=0.5, pairs=True),
        slice_by=["lang", "source"],
    )
    assert as_pairs == as_dicts
    assert as_pairs["metadata.lang_mix"].drifted


def test_id_changes() -> None:
    assert id_changes(["a", "b", "c", "c"], ["b", "c", "d", "e"]) == {
        "added": 2,
        "removed": 1,
        "kept": 2,
    }
    assert id_changes([], ["a"]) == {"added": 1, "removed": 0, "kept": 0}


def test_psi_by_hand() -> None:
    # Two bins cut at the previous median 4.5: shares 0.5 / 0.5 against 0.8 / 0.2.
    previous = np.arange(10)
    current = np.array([0] * 8 + [9] * 2)
    expected = 0.3 * math.log(0.8 / 0.5) - 0.3 * math.log(0.2 / 0.5)
    assert psi(previous, current, bins=2) == pytest.approx(expected)
    # Values beyond the previous range fall in the open outer bins; empty bins get 1e-4.
    far = psi(previous, np.full(10, 100.0), bins=2)
    assert far == pytest.approx((1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1 - 0.5) * math.log(1 / 0.5))
    # Constant previous sample: duplicate edges merge, no error.
    assert psi(np.full(20, 3.0), np.full(20, 3.0)) == 0.0
    assert math.isnan(psi(np.array([]), current))


def test_ks_matches_definition() -> None:
    rng = np.random.default_rng(3)
    previous, current = rng.normal(size=80), rng.normal(0.3, 1, size=60)
    grid = np.concatenate([previous, current])
    cdf_prev = np.searchsorted(np.sort(previous), grid, side="right") / previous.size
    cdf_cur = np.searchsorted(np.sort(current), grid, side="right") / current.size
    statistic, p = ks(previous, current)
    assert statistic == pytest.approx(np.abs(cdf_prev - cdf_cur).max())
    assert 0.0 < p < 1.0
    assert all(math.isnan(v) for v in ks(previous, np.array([])))


def test_embedding_shift_same_distribution_and_shifted_mean() -> None:
    rng = np.random.default_rng(7)
    previous = rng.normal(size=(150, 16))
    same = rng.normal(size=(120, 16))
    shifted = rng.normal(0.4, 1.0, size=(120, 16))

    distance, p = embedding_shift(previous, same, permutations=1000, seed=0)
    assert distance == pytest.approx(np.linalg.norm(previous.mean(0) - same.mean(0)))
    assert p > 0.05

    distance, p = embedding_shift(previous, shifted, permutations=1000, seed=0)
    assert distance > 1.0
    assert p < 0.01
    assert p >= 1 / 1001


def test_embedding_shift_null_p_values_are_uniform() -> None:
    # Unequal sides away from the origin: a mix-up of the two group sizes shows here.
    rng = np.random.default_rng(12)
    p_values = np.array(
        [
            embedding_shift(
                rng.normal(3.0, 1.0, size=(30, 4)),
                rng.normal(3.0, 1.0, size=(12, 4)),
                permutations=200,
                seed=seed,
            )[1]
            for seed in range(300)
        ]
    )
    assert 0.01 <= (p_values < 0.05).mean() <= 0.08
    assert 0.4 <= p_values.mean() <= 0.6


def test_embedding_shift_caps_rows_and_is_seeded() -> None:
    rng = np.random.default_rng(8)
    previous = rng.normal(size=(3000, 4))
    current = rng.normal(0.2, 1.0, size=(1500, 4))
    first = embedding_shift(previous, current, permutations=200, seed=5, max_rows=600)
    assert first == embedding_shift(previous, current, permutations=200, seed=5, max_rows=600)
    full = np.linalg.norm(previous.mean(0) - current.mean(0))
    # 400 and 200 rows of a 4-wide shift of norm 0.4: the subsample's distance is near it.
    assert first[0] == pytest.approx(full, abs=0.25)
    assert first[1] < 0.01
    with pytest.raises(ValueError, match="width"):
        embedding_shift(previous, current[:, :3])


def test_null_false_positive_rate_of_prompt_length_tests_holds_the_level() -> None:
    repetitions = 200
    runs = [
        run(examples(n=100, seed=2 * seed), examples(n=100, seed=2 * seed + 1), slice_by=[])
        for seed in range(repetitions)
    ]
    for test in ("prompt_length_ks", "prompt_length_psi"):
        false_alarms = sum(r[test].drifted for r in runs)
        assert false_alarms / repetitions <= 0.08, test


def test_null_false_positive_rate_of_chi_square_holds_the_level() -> None:
    rng = np.random.default_rng(11)
    repetitions = 2000
    labels = np.array(["qa", "summarize", "translate"])
    p_values = np.array(
        [
            chi_square(list(rng.choice(labels, 100)), list(rng.choice(labels, 120)))[1]
            for _ in range(repetitions)
        ]
    )
    # Within three standard errors of 0.05 at 2000 repetitions.
    assert (p_values < 0.05).mean() <= 0.065
    assert (p_values < 0.05).mean() >= 0.035


def test_reference_tests_skipped_without_references() -> None:
    previous = examples(seed=0).assign(references=None)
    current = examples(seed=1).assign(references=[[] for _ in range(200)])
    tests = run(previous, current)
    assert "reference_length_psi" not in tests
    assert "reference_length_ks" not in tests

    tests = run(previous, examples(seed=1))
    assert math.isnan(tests["reference_length_ks"].statistic)
    assert not tests["reference_length_ks"].drifted


@pytest.mark.parametrize("empty_side", ["previous", "current"])
def test_empty_day_gives_nan_and_no_drift(empty_side: str) -> None:
    day = examples(n=50)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    embeddings = np.random.default_rng(0).normal(size=(50, 8))
    no_embeddings = np.zeros((0, 8))
    if empty_side == "previous":
        args = (empty, day, no_embeddings, embeddings)
    else:
        args = (day, empty, embeddings, no_embeddings)
    tests = run(
        args[0],
        args[1],
        slice_by=["task", "lang"],
        previous_embeddings=args[2],
        current_embeddings=args[3],
    )
    assert {"task_mix", "prompt_length_psi", "prompt_length_ks", "metadata.lang_mix"} <= set(tests)
    assert "prompt_embedding_shift" in tests
    for test in tests.values():
        assert math.isnan(test.statistic), test.test
        assert not test.drifted, test.test
        assert "no figure" in test.detail


def test_none_and_empty_values_are_one_missing_label() -> None:
    previous = examples(n=40, seed=0).assign(metadata=None, task=None)
    current = examples(n=60, seed=1).assign(
        metadata=[[] if i % 2 else {"lang": ""} for i in range(60)], task=""
    )
    tests = run(previous, current, slice_by=["lang"])
    for name in ("metadata.lang_mix", "task_mix"):
        test = tests[name]
        assert (test.statistic, test.p_value, test.drifted) == (0.0, 1.0, False), name


def test_reference_length_is_that_of_the_first_reference() -> None:
    previous = examples(seed=0)
    longer_second = previous.assign(references=[[r[0], r[0] * 5] for r in previous["references"]])
    longer_first = previous.assign(references=[[r[0] * 5, r[0]] for r in previous["references"]])
    assert not run(previous, longer_second)["reference_length_ks"].drifted
    tests = run(previous, longer_first)
    assert tests["reference_length_ks"].drifted
    assert tests["reference_length_psi"].drifted
    assert not tests["prompt_length_ks"].drifted


def test_level_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="level"):
        run(examples(n=10), examples(n=10), level=95)


def test_psi_threshold_allows_for_sampling_noise_on_small_days() -> None:
    """Two samples of 60 lengths from one distribution, 200 times: PSI alone crosses 0.2
    often; the PSI test (over 0.2 and p < 0.05) flags at most about the level; a doubling
    is flagged."""
    rng = np.random.default_rng(5)
    raw = flagged = 0
    for _ in range(200):
        a, b = rng.poisson(80, 60).astype(float), rng.poisson(80, 60).astype(float)
        index, p = psi_test(a, b)
        raw += index > 0.2
        flagged += index > 0.2 and p < 0.05
    assert raw >= 40, "the bias this guards against"
    assert flagged <= 16
    index, p = psi_test(a, 2 * b)
    assert index > 0.2 and p < 0.01


def test_a_change_splits_into_the_model_part_and_the_data_part() -> None:
    previous = pd.Series({"a": 0.5, "b": 0.5, "gone": 1.0})
    # same inputs a, b: +0.1 each; the hard new example pulls the day's mean down
    current = pd.Series({"a": 0.6, "b": 0.6, "new": 0.0})
    split = split_change(previous, current)
    assert split.change == pytest.approx(0.4 - 2 / 3)
    assert split.recurring == pytest.approx(0.1) and split.kept == 2
    assert split.recurring + split.data == pytest.approx(split.change)
    disjoint = split_change(pd.Series({"x": 1.0}), pd.Series({"y": 0.0}))
    assert math.isnan(disjoint.recurring) and disjoint.data == -1.0 and disjoint.kept == 0
    same = split_change(previous, previous)
    assert (same.change, same.recurring, same.data) == (0.0, 0.0, 0.0)
    assert math.isnan(split_change(previous.iloc[:0], current).change)
