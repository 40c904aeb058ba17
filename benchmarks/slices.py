"""B10: ``metric_slices`` for 10,000 rows × 3 slice keys (task, and two metadata fields;
with the derived prompt-length terciles, recurring/new and ``all``: 18 slices) against
the ``metric_aggregates`` step alone on the same partition (``aggregate_partition``), both
with 1,000 bootstrap resamples. The slices also run the paired comparison with a
baseline (interval, p-value, Benjamini-Hochberg, mde, n needed) for every slice × metric.
The slice ``all`` must reproduce the aggregate means before anything is timed.

    .venv/bin/python -m benchmarks.slices [--repetitions 5] [--quick]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.common import Result, main_for, repeat
from llm_eval_pipeline.core.aggregate import aggregate_partition
from llm_eval_pipeline.core.schema import ALL_METRIC_COLUMNS, Agg, Col
from llm_eval_pipeline.core.slices import ALL, SliceSpec, metric_slices, slice_members

GOAL = 1.5
RESAMPLES = 1000
METRICS = [m for m in ALL_METRIC_COLUMNS if not m.startswith("judge")][:16]


def partition(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Examples with 3 slice keys, and two models' per-example metrics and generations."""
    rng = np.random.default_rng(seed)
    ids = [f"e{i}" for i in range(n)]
    examples = pd.DataFrame({
        Col.EXAMPLE_ID: ids,
        Col.TASK: rng.choice(["qa", "summarization", "open"], n),
        Col.PROMPT: ["x" * int(k) for k in rng.integers(10, 400, n)],
        Col.METADATA: [{"source": f"s{a}", "language": f"l{b}"}
                       for a, b in zip(rng.integers(0, 4, n), rng.integers(0, 5, n), strict=True)],
    })  # fmt: skip

    def scored() -> pd.DataFrame:
        values = {m: rng.uniform(0.01, 1.0, n) for m in METRICS}
        return pd.DataFrame({Col.EXAMPLE_ID: ids, **values})

    generations = pd.DataFrame({
        Col.EXAMPLE_ID: ids, Col.ERROR: [None] * n,
        Col.LATENCY_MS: rng.uniform(10, 100, n), Col.OUTPUT_TOKENS: rng.integers(1, 60, n),
    })  # fmt: skip
    return examples, scored(), scored(), generations


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    n = 1000 if quick else 10_000
    examples, candidate, baseline, generations = partition(n)
    spec = SliceSpec(
        min_slice_size=20, relative_margin=0.02, resamples=RESAMPLES, seed=0, margin_floor=0.01
    )
    earlier = set(examples[Col.EXAMPLE_ID][: n // 2])

    def aggregates() -> pd.DataFrame:
        return aggregate_partition(candidate, generations, RESAMPLES, 0)

    def slices() -> pd.DataFrame:
        members = slice_members(examples, ["task", "source", "language"], earlier)
        return metric_slices(
            candidate.set_index(Col.EXAMPLE_ID), baseline.set_index(Col.EXAMPLE_ID), members,
            list(examples[Col.EXAMPLE_ID]), METRICS, spec,
        )  # fmt: skip

    sliced, aggregated = slices(), aggregates().set_index(Agg.METRIC)
    everything = sliced[sliced["slice_key"] == ALL].set_index(Agg.METRIC)
    for metric in METRICS:
        assert np.isclose(everything.loc[metric, Agg.MEAN], aggregated.loc[metric, Agg.MEAN])
    slice_count = len(sliced[["slice_key", "slice_value"]].drop_duplicates())
    base, _ = repeat(aggregates, repetitions)
    ours, _ = repeat(slices, repetitions)
    ratio = ours.median / base.median
    met = ratio <= GOAL
    return [
        Result(
            id="B10",
            title=f"metric_slices, {n:,} rows × 3 slice keys ({slice_count} slices × "
            f"{len(METRICS)} metrics, paired with a baseline)",
            baseline_label="metric_aggregates step alone",
            ours_label="metric_slices (core.slices)",
            baseline=base,
            ours=ours,
            ratio=ratio,
            goal=f"slices ≤ {GOAL}× the aggregates step",
            met=met,
            notes=[
                f"the slice all equals the aggregate means of {len(METRICS)} metrics",
                f"{len(sliced)} slice × metric rows; ratio = slices / aggregates (lower is better)",
            ],
            shortfall=None
            if met
            else f"slices took {ratio:.2f}× the aggregates step: {slice_count} slices each "
            f"draw {RESAMPLES} resamples for the means and again for the paired differences",
        )
    ]


if __name__ == "__main__":
    main_for(run, __doc__)
