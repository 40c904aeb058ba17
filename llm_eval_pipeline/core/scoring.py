"""``score_batch``: every configured metric for a pandas batch of generated outputs.

The same function runs in-process (``llm-eval score``, tests) and inside the Spark UDF
behind ``example_metrics``.

Input columns: ``example_id``, ``prompt``, ``context``, ``references`` (list of strings)
and ``output`` (null when generation failed); optionally ``output_logprob`` and
``output_logprob_tokens``, the output's log-probabilities as the evaluated model's endpoint
returned them, from which ``output_perplexity`` = exp(-output_logprob /
output_logprob_tokens) takes precedence over the scorer's.

Output: ``example_id``, every metric column of the enabled groups
(``core.schema.METRIC_COLUMNS``; float, null where it cannot be computed) and
``metric_notes``, a mapping from group to the reason it is null for the row. The
documented values for the edge cases:

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

import math
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
NO_OWN_LOGPROBS = "the backend returned no logprobs for the output"


@dataclass
class ScoringContext:
    """The loaded models scoring needs beyond the metric config: the perplexity scorer
    (the evaluated model, or a configured scorer model) and an optional NLI model. When
    perplexity cannot be computed, ``perplexity_note`` says why."""

    perplexity: PerplexityScorer | None = None
    perplexity_note: str = "no local model scores text for this backend"
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
            lambda: _perplexity(
                prompts, contexts, outputs, references, _own_logprobs(batch), context, values, notes
            ),
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
                        [prompts[i] for i in with_output],
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


def _own_logprobs(batch: pd.DataFrame) -> list[tuple[float, int] | None]:
    """Each row's (output log-probability sum, tokens) as the generating endpoint
    returned them, or None."""
    if Col.OUTPUT_LOGPROB not in batch or Col.OUTPUT_LOGPROB_TOKENS not in batch:
        return [None] * len(batch)
    return [
        None if _missing(lp) or _missing(k) or not k else (float(lp), int(k))
        for lp, k in zip(batch[Col.OUTPUT_LOGPROB], batch[Col.OUTPUT_LOGPROB_TOKENS], strict=True)
    ]


def _perplexity(
    prompts, contexts, outputs, references, own, context: ScoringContext, values, notes
) -> None:
    """Reference and output perplexity from the scorer; the output's from the evaluated
    model's own log-probabilities (``own``) instead, when its endpoint returned them."""
    n = len(prompts)
    for i, logprob in enumerate(own):
        if logprob is not None and outputs[i]:
            values["output_perplexity"][i] = math.exp(-logprob[0] / logprob[1])
    scorer = context.perplexity
    reference_scores = output_scores = [None] * n
    if scorer is not None:
        rendered = [scorer.render(prompts[i], contexts[i]) for i in range(n)]
        reference_scores = scorer.score(rendered, [r[0] if r else "" for r in references])
        pending = [i for i in range(n) if values["output_perplexity"][i] is None]
        scored = scorer.score([rendered[i] for i in pending], [outputs[i] or "" for i in pending])
        output_scores = [None] * n
        for i, score in zip(pending, scored, strict=True):
            output_scores[i] = score
    for i in range(n):
        ref, out = reference_scores[i], output_scores[i]
        if ref is not None:
            values["reference_perplexity"][i] = ref.perplexity
            values["reference_bits_per_byte"][i] = ref.bits_per_byte
        if out is not None:
            values["output_perplexity"][i] = out.perplexity
        reasons = []
        if ref is None:
            reasons.append(context.perplexity_note if scorer is None else NO_REFERENCES)
        if values["output_perplexity"][i] is None:
            reasons.append(
                NO_OWN_LOGPROBS if scorer is None and outputs[i] else "no or empty output"
            )
        if reasons:
            notes[i]["perplexity"] = "; ".join(dict.fromkeys(reasons))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _missing_list(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)
