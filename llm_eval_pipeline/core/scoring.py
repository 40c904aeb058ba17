"""``score_batch``: every configured metric for a pandas batch of generated outputs.

The same function runs in-process (``llm-eval score``, tests) and inside the Spark UDF
behind ``example_metrics``.

Input columns: ``example_id``, ``prompt``, ``context``, ``references`` (list of strings)
and ``output`` (null when generation failed). Output: ``example_id``, every metric column
of the enabled groups (``core.schema.METRIC_COLUMNS``; float, null where it cannot be
computed) and ``metric_notes``, a mapping from group to the reason it is null for the
row. The documented values for the edge cases:

* no output (generation failed): every metric null, note ``no output``;
* no references (an ``open`` task): ROUGE, correctness and judge null, note
  ``no references``; reference perplexity null; the hallucination index uses the prompt
  and context as evidence;
* an empty output: ROUGE, EM, F1 and recall are 0.0, output perplexity is null (nothing to
  score), the hallucination index is 0.0 (nothing stated);
* several references: ROUGE and correctness take the best reference; perplexity scores
  the first reference.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.correctness import correctness_scores, fabrication
from llm_eval_pipeline.core.metrics.hallucination import (
    NliScorer,
    hallucination_components,
    hallucination_scores,
)
from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer
from llm_eval_pipeline.core.metrics.rouge import rouge_scores
from llm_eval_pipeline.core.schema import METRIC_COLUMNS, METRIC_NOTES, Col

NO_OUTPUT = "no output"
NO_REFERENCES = "no references"


@dataclass
class ScoringContext:
    """The loaded models scoring needs beyond the metric config: the perplexity scorer
    (the evaluated model, or a configured scorer model) and an optional NLI model. When
    perplexity cannot be computed, ``perplexity_note`` says why."""

    perplexity: PerplexityScorer | None = None
    perplexity_note: str = "no scoring model for this backend"
    nli: NliScorer | None = None
    timings: dict[str, float] = field(default_factory=dict)


def output_columns(config: MetricConfig) -> list[str]:
    return [c for group in config.groups for c in METRIC_COLUMNS[group]]


def score_batch(
    batch: pd.DataFrame, config: MetricConfig, context: ScoringContext | None = None
) -> pd.DataFrame:
    """Metrics for every row of ``batch``, in its order (see the module docstring)."""
    context = context or ScoringContext()
    n = len(batch)
    outputs: list[str | None] = [None if _missing(o) else str(o) for o in batch[Col.OUTPUT]]
    references = [
        list(r) if r is not None and not _missing_list(r) else [] for r in batch[Col.REFERENCES]
    ]
    prompts = [str(p) for p in batch[Col.PROMPT]]
    contexts = [None if _missing(c) else str(c) for c in batch.get(Col.CONTEXT, [None] * n)]
    values: dict[str, list[float | None]] = {c: [None] * n for c in output_columns(config)}
    notes: list[dict[str, str]] = [{} for _ in range(n)]

    both = [i for i in range(n) if outputs[i] is not None and references[i]]
    for i in range(n):
        reason = NO_OUTPUT if outputs[i] is None else NO_REFERENCES if not references[i] else None
        if reason:
            for group in ("rouge", "correctness", "judge"):
                if config.enabled(group):
                    notes[i][group] = reason

    def timed(group: str, fn) -> None:
        start = time.perf_counter()
        fn()
        context.timings[group] = context.timings.get(group, 0.0) + time.perf_counter() - start

    def fill(rows: list[int], scores: Mapping[str, list[Any]]) -> None:
        for name, column in scores.items():
            for i, value in zip(rows, column, strict=True):
                values[name][i] = None if value is None else float(value)

    if config.enabled("rouge") and both:
        timed(
            "rouge",
            lambda: fill(
                both,
                rouge_scores(
                    [outputs[i] for i in both],
                    [references[i] for i in both],
                    config.rouge_use_stemmer,
                    config.rouge_split_sentences,
                ),
            ),
        )
    with_output = [i for i in range(n) if outputs[i] is not None]
    support: dict[int, dict[str, float | None]] = {}
    if (config.enabled("correctness") and both) or (
        config.enabled("hallucination") and with_output
    ):
        # evidence support feeds both the hallucination index and answer_correctness
        timed(
            "evidence_support",
            lambda: support.update(
                {
                    i: hallucination_components(outputs[i], prompts[i], contexts[i], references[i])
                    for i in with_output
                }
            ),
        )
    if config.enabled("correctness") and both:
        timed(
            "correctness",
            lambda: fill(
                both,
                correctness_scores(
                    [outputs[i] for i in both],
                    [references[i] for i in both],
                    [fabrication(support[i]) for i in both],
                    config.correctness_weights,
                    config.correctness_penalty,
                    config.embedding_model,
                    config.embedding_batch_size,
                ),
            ),
        )
    if config.enabled("judge") and both:
        timed("judge", lambda: _judge(both, prompts, outputs, references, config, values, notes))
    if config.enabled("perplexity"):
        timed(
            "perplexity",
            lambda: _perplexity(prompts, contexts, outputs, references, context, values, notes),
        )
    if config.enabled("hallucination"):
        for i in range(n):
            if outputs[i] is None:
                notes[i]["hallucination"] = NO_OUTPUT
        if with_output:
            timed(
                "hallucination",
                lambda: fill(
                    with_output,
                    hallucination_scores(
                        [outputs[i] for i in with_output],
                        [support[i] for i in with_output],
                        [contexts[i] for i in with_output],
                        [references[i] for i in with_output],
                        config.hallucination_weights,
                        context.nli,
                    ),
                ),
            )
        if context.nli is None:
            for i in with_output:
                notes[i]["nli_contradiction"] = "no NLI model configured"

    result = pd.DataFrame({Col.EXAMPLE_ID: batch[Col.EXAMPLE_ID].to_numpy()})
    for name, column in values.items():
        result[name] = np.array([np.nan if v is None else v for v in column], dtype="float64")
    result[METRIC_NOTES] = notes
    return result


def _judge(rows, prompts, outputs, references, config, values, notes) -> None:
    from llm_eval_pipeline.core.metrics.judge import judge_correctness

    scores, judge_notes = judge_correctness(
        [prompts[i] for i in rows],
        [outputs[i] for i in rows],
        [references[i] for i in rows],
        config.judge,
    )
    for i, score, note in zip(rows, scores, judge_notes, strict=True):
        values["judge_correctness"][i] = score
        if note:
            notes[i]["judge"] = note


def _perplexity(
    prompts, contexts, outputs, references, context: ScoringContext, values, notes
) -> None:
    n = len(prompts)
    scorer = context.perplexity
    if scorer is None:
        for i in range(n):
            notes[i]["perplexity"] = context.perplexity_note
        return
    rendered = [scorer.render(prompts[i], contexts[i]) for i in range(n)]
    reference_scores = scorer.score(rendered, [r[0] if r else "" for r in references])
    output_scores = scorer.score(rendered, [o or "" for o in outputs])
    for i in range(n):
        ref, out = reference_scores[i], output_scores[i]
        if ref is not None:
            values["reference_perplexity"][i] = ref.perplexity
            values["reference_bits_per_byte"][i] = ref.bits_per_byte
        if out is not None:
            values["output_perplexity"][i] = out.perplexity
        missing = [label for label, s in (("reference", ref), ("output", out)) if s is None]
        if missing:
            reasons = {"reference": NO_REFERENCES, "output": "no or empty output"}
            notes[i]["perplexity"] = "; ".join(reasons[m] for m in missing)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _missing_list(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)
