"""Slice statistics: validated by simulation (interval coverage, BH's false-discovery
rate on null data, power at the reported minimum detectable effect), and the slices of a
partition with their verdicts."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.aggregate import (
    bh_q_values,
    bootstrap_means,
    bootstrap_p_values,
    mde,
    n_needed,
    percentile_interval,
)
from llm_eval_pipeline.core.slices import (
    ALL,
    MISSING,
    PROMPT_LENGTH,
    RECURRING,
    SliceSpec,
    metric_slices,
    power_shortfalls,
    regressions,
    slice_members,
)

SIMULATIONS = 400
SPEC = SliceSpec(min_slice_size=20, relative_margin=0.02, resamples=1000, seed=0, margin_floor=0)


def test_bootstrap_intervals_cover_the_true_mean_within_two_points_of_nominal() -> None:
    """1000 samples of 200 values shaped like a bounded, skewed metric (Beta(2, 5), mean
    2/7), 1000 resamples each: the 95% percentile interval holds the true mean 93-97% of
    the time."""
    rng = np.random.default_rng(1)
    samples = rng.beta(2.0, 5.0, size=(1000, 200))
    covered = 0
    for sample in samples:
        low, high = percentile_interval(bootstrap_means(sample[:, None], 1000, rng))
        covered += low[0] <= 2 / 7 <= high[0]
    coverage = covered / len(samples)
    print(f"coverage {coverage:.3f}")
    assert 0.93 <= coverage <= 0.97


def test_benjamini_hochberg_keeps_the_false_discovery_rate_on_null_data() -> None:
    """400 partitions of 30 null tests (paired differences with mean 0, n = 60): the share
    of partitions with any discovery at q <= 0.05 (the FDR, as every discovery is false)
    stays at or under 5% (+ simulation noise of one standard error)."""
    rng = np.random.default_rng(2)
    with_discovery = 0
    for _ in range(SIMULATIONS):
        diffs = rng.normal(0.0, 1.0, size=(60, 30))
        draws = bootstrap_means(diffs, 400, rng)
        p = bootstrap_p_values(draws, diffs.mean(axis=0))
        with_discovery += bool((bh_q_values(p) <= 0.05).any())
    fdr = with_discovery / SIMULATIONS
    print(f"false-discovery rate {fdr:.3f}")
    assert fdr <= 0.05 + np.sqrt(0.05 * 0.95 / SIMULATIONS)


def test_an_effect_of_the_reported_mde_is_detected_about_80_percent_of_the_time() -> None:
    """Paired differences with sd 1 and n = 100: a true effect equal to the mde computed
    from each sample is detected (p < 0.05) in 75-85% of 400 samples."""
    rng = np.random.default_rng(3)
    effect = mde(1.0, 100)
    detected = 0
    for _ in range(SIMULATIONS):
        diffs = rng.normal(effect, 1.0, size=(100, 1))
        draws = bootstrap_means(diffs, 1000, rng)
        detected += bootstrap_p_values(draws, diffs.mean(axis=0))[0] < 0.05
    power = detected / SIMULATIONS
    print(f"power at the mde {power:.3f}")
    assert 0.75 <= power <= 0.85


def test_bh_by_hand_and_sample_sizes() -> None:
    q = bh_q_values([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 0.04, 0.06, 0.0533, 0.5, then the running
    # minimum from the largest down
    np.testing.assert_allclose(q[[0, 1, 2, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.isnan(q[3])
    assert n_needed(1.0, mde(1.0, 100)) == pytest.approx(100, abs=1)
    assert np.isnan(mde(1.0, 1)) and np.isnan(n_needed(1.0, 0.0))


def _examples(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "example_id": [f"e{i}" for i in range(n)],
            "task": ["qa"] * n,
            "prompt": ["x" * (10 + i) for i in range(n)],
            "metadata": [
                {"source": "alpha" if i % 2 == 0 else "beta"} if i < n - 1 else {} for i in range(n)
            ],
        }
    )


def test_slices_name_their_members() -> None:
    examples = _examples()
    sizes = slice_members(examples, ["task", "source"], earlier_ids={"e0", "e1"}).sizes()
    assert sizes[(ALL, ALL)] == 60 and sizes[("task", "qa")] == 60
    assert sizes[("source", "alpha")] == 30 and sizes[("source", "beta")] == 29
    assert sizes[("source", MISSING)] == 1
    assert sorted(v for k, v in sizes.items() if k[0] == PROMPT_LENGTH) == [20, 20, 20]
    assert sizes[(RECURRING, RECURRING)] == 2 and sizes[(RECURRING, "new")] == 58
    with pytest.raises(ValueError, match="'origin', which no example has"):
        slice_members(examples, ["origin"], set())


def test_a_candidate_wrong_on_one_slice_regresses_there_only() -> None:
    examples = _examples()
    ids = examples["example_id"].tolist()
    members = slice_members(examples, ["source"], set())
    source = {i: m.get("source") for i, m in zip(ids, examples["metadata"], strict=True)}
    baseline = pd.DataFrame({"exact_match": 1.0}, index=ids)
    candidate = pd.DataFrame(
        {"exact_match": [0.0 if source[i] == "beta" else 1.0 for i in ids]}, index=ids
    )
    table = metric_slices(candidate, baseline, members, ids, ["exact_match"], SPEC)
    by_slice = table.set_index(["slice_key", "slice_value"])
    assert by_slice.loc[("source", "alpha"), "verdict"] == "no_change"
    assert by_slice.loc[("source", "alpha"), "mean"] == 1.0
    beta = by_slice.loc[("source", "beta")]
    assert beta["verdict"] == "regression" and beta["mean"] == 0.0 and beta["diff"] == -1.0
    assert beta["q_value"] <= 0.05
    assert by_slice.loc[("source", MISSING), "verdict"] == "inconclusive"  # 1 example
    alone = metric_slices(candidate, None, members, ids, ["exact_match"], SPEC)
    assert alone["verdict"].isna().all() and alone["diff"].isna().all()


def test_the_whole_partition_is_tested_even_below_the_slice_size() -> None:
    """12 examples: no sub-slice is tested (min_slice_size 20), the slice ``all`` is; a
    planted drop of 0.1 on every example regresses there, identical outputs do not."""
    examples = _examples(12)
    ids = examples["example_id"].tolist()
    members = slice_members(examples, ["source"], set())
    rng = np.random.default_rng(1)
    baseline = pd.DataFrame({"answer_correctness": rng.uniform(0.3, 0.9, 12)}, index=ids)
    worse = metric_slices(baseline - 0.1, baseline, members, ids, ["answer_correctness"], SPEC)
    by_slice = worse.set_index(["slice_key", "slice_value"])
    assert by_slice.loc[(ALL, ALL), "verdict"] == "regression"
    assert by_slice.loc[(ALL, ALL), "diff"] == pytest.approx(-0.1)
    assert (worse[worse["slice_key"] != ALL]["verdict"] == "inconclusive").all()
    same = metric_slices(baseline, baseline, members, ids, ["answer_correctness"], SPEC)
    assert same.set_index("slice_key").loc[ALL, "verdict"] == "no_change"
    wide = replace(SPEC, relative_margin=0.5)
    within = metric_slices(baseline - 0.1, baseline, members, ids, ["answer_correctness"], wide)
    assert within.set_index("slice_key").loc[ALL, "verdict"] == "no_change", "a wide margin"


def test_perplexity_is_compared_on_the_log_scale_and_lower_is_better() -> None:
    examples = _examples(60)
    ids = examples["example_id"].tolist()
    members = slice_members(examples, [], set())
    rng = np.random.default_rng(2)
    perplexity = pd.DataFrame({"reference_perplexity": rng.uniform(5, 9, 60)}, index=ids)
    higher = metric_slices(perplexity + 1, perplexity, members, ids, ["reference_perplexity"], SPEC)
    everything = higher.set_index("slice_key").loc[ALL]
    assert everything["verdict"] == "regression"
    geometric_mean = float(np.exp(np.log(perplexity["reference_perplexity"]).mean()))
    assert everything["baseline_mean"] == pytest.approx(geometric_mean), "the metric's scale"
    assert everything["diff"] == pytest.approx(
        np.log(perplexity["reference_perplexity"] + 1).mean()
        - np.log(perplexity["reference_perplexity"]).mean()
    ), "nats per token"
    lower = metric_slices(perplexity - 1, perplexity, members, ids, ["reference_perplexity"], SPEC)
    assert lower.set_index("slice_key").loc[ALL, "verdict"] == "improvement"


def test_regressions_and_power_shortfalls_read_the_slice_table() -> None:
    examples = _examples()
    ids = examples["example_id"].tolist()
    members = slice_members(examples, ["source"], set())
    source = {i: m.get("source") for i, m in zip(ids, examples["metadata"], strict=True)}
    baseline = pd.DataFrame({"exact_match": 1.0, "rougeL": 0.5}, index=ids)
    candidate = pd.DataFrame(
        {"exact_match": [0.0 if source[i] == "beta" else 1.0 for i in ids], "rougeL": 0.5},
        index=ids,
    )
    table = metric_slices(candidate, baseline, members, ids, ["exact_match", "rougeL"], SPEC)
    found = regressions(table, ["exact_match", "rougeL"])
    assert list(zip(found["slice_key"], found["slice_value"], strict=True))[:2] == [
        (ALL, ALL),
        ("source", "beta"),
    ], "the whole partition first"
    assert set(found["metric"]) == {"exact_match"}
    assert regressions(table, ["rougeL"]).empty, "only the metrics asked for"
    power = power_shortfalls(table, ["exact_match", "rougeL"], 0.02, 0).set_index("metric")
    # rougeL: identical on every example, sd 0, so any difference would show
    assert not power.loc["rougeL", "short"] and power.loc["rougeL", "mde"] == 0
    assert power.loc["exact_match", "margin"] == pytest.approx(0.02)
    assert power.loc["exact_match", "short"], "sd 0.5 over 60 pairs cannot see 0.02"
    assert power.loc["exact_match", "n_needed"] > 60


def test_sub_slice_intervals_from_the_shared_draw_cover_the_true_mean() -> None:
    """The slices of a partition share one Poisson-bootstrap draw: 300 partitions of 300
    rows cut into three slices of 100 (Beta(2, 5) values, mean 2/7), 900 intervals from
    metric_slices itself: coverage 93-97%."""
    rng = np.random.default_rng(4)
    ids = [f"e{i}" for i in range(300)]
    examples = pd.DataFrame(
        {"example_id": ids, "task": ["a", "b", "c"] * 100, "prompt": ids, "metadata": [{}] * 300}
    )
    members = slice_members(examples, ["task"], set())
    spec = replace(SPEC, resamples=500)
    covered = total = 0
    for seed in range(300):
        values = pd.DataFrame({"rougeL": rng.beta(2.0, 5.0, 300)}, index=ids)
        table = metric_slices(values, None, members, ids, ["rougeL"], replace(spec, seed=seed))
        tasks = table[table["slice_key"] == "task"]
        covered += int(((tasks["ci_low"] <= 2 / 7) & (tasks["ci_high"] >= 2 / 7)).sum())
        total += len(tasks)
    coverage = covered / total
    print(f"sub-slice coverage {coverage:.3f}")
    assert total == 900 and 0.93 <= coverage <= 0.97


def test_the_margin_floor_keeps_a_near_zero_baseline_from_calling_noise_a_change() -> None:
    """Against a baseline mean of 0.0003 a relative margin of 2% is 0.000006: a steady
    +0.01 would be an "improvement"; with a floor of 0.01 it is no change."""
    examples = _examples(60)
    ids = examples["example_id"].tolist()
    members = slice_members(examples, [], set())
    baseline = pd.DataFrame({"answer_correctness": [0.0003] * 60}, index=ids)
    rng = np.random.default_rng(0)
    candidate = baseline + rng.uniform(0.008, 0.0095, size=(60, 1))
    plain = metric_slices(candidate, baseline, members, ids, ["answer_correctness"], SPEC)
    assert plain.set_index("slice_key").loc[ALL, "verdict"] == "improvement"
    floored = replace(SPEC, margin_floor=0.01)
    table = metric_slices(candidate, baseline, members, ids, ["answer_correctness"], floored)
    assert table.set_index("slice_key").loc[ALL, "verdict"] == "no_change"
    power = power_shortfalls(table, ["answer_correctness"], 0.02, 0.01)
    assert power.loc[0, "margin"] == 0.01


def test_the_streamed_bootstrap_does_not_depend_on_row_order_or_batches() -> None:
    """A row's Poisson counts come from its key: the slice table of rows added in one
    batch equals that of the same rows added shuffled, in uneven batches, by two
    accumulators merged."""
    from llm_eval_pipeline.core.aggregate import row_keys
    from llm_eval_pipeline.core.slices import slice_sums, slice_table, slice_values

    examples = _examples(90)
    ids = examples["example_id"].tolist()
    slicing = slice_members(examples, ["source"], {"e1", "e2"})
    rng = np.random.default_rng(5)
    values = slice_values(rng.uniform(0, 1, (90, 1)), rng.uniform(0, 1, (90, 1)), np.array([False]))
    keys = row_keys(ids)
    spec = replace(SPEC, resamples=200, seed=3)
    whole = slice_sums(slicing, 1, spec)
    whole.add(values, slicing.groupings(slice(None)), keys)
    order = rng.permutation(90)
    parts = [slice_sums(slicing, 1, spec) for _ in range(2)]
    for part, rows in zip(parts, (order[:17], order[17:]), strict=True):
        for batch in np.array_split(rows, 3):
            part.add(values[batch], slicing.groupings(batch), keys[batch])
    parts[0].merge(parts[1])
    pd.testing.assert_frame_equal(
        slice_table(whole, slicing, ["rougeL"], spec, compared=True),
        slice_table(parts[0], slicing, ["rougeL"], spec, compared=True),
        check_exact=False,
        rtol=1e-6,  # the counts are summed in float32 blocks
    )
    shifted = slice_sums(slicing, 1, replace(spec, seed=4))
    shifted.add(values, slicing.groupings(slice(None)), keys)
    assert not np.allclose(shifted.sums, whole.sums), "another seed, other resamples"
