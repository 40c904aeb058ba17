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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
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
from llm_eval_pipeline.core.metrics.registry import SCORED_GROUPS
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


@dataclass
class _Rows:
    """One batch as the group scorers read it, and the table they fill: ``values`` per
    metric column and ``notes`` per row (group → why it is null)."""

    batch: pd.DataFrame
    outputs: list[str | None]
    references: list[list[str]]
    prompts: list[str]
    contexts: list[str | None]
    values: dict[str, list[float | None]]
    notes: list[dict[str, str]]
    support: dict[int, dict[str, float | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, batch: pd.DataFrame, config: MetricConfig) -> _Rows:
        n = len(batch)
        return cls(
            batch=batch,
            outputs=[None if _missing(o) else str(o) for o in batch[Col.OUTPUT]],
            references=[
                list(r) if r is not None and not _missing_list(r) else []
                for r in batch[Col.REFERENCES]
            ],
            prompts=[str(p) for p in batch[Col.PROMPT]],
            contexts=[None if _missing(c) else str(c) for c in batch.get(Col.CONTEXT, [None] * n)],
            values={c: [None] * n for c in output_columns(config)},
            notes=[{} for _ in range(n)],
        )

    @cached_property
    def both(self) -> list[int]:
        """Rows with an output and references."""
        return [i for i, o in enumerate(self.outputs) if o is not None and self.references[i]]

    @cached_property
    def with_output(self) -> list[int]:
        return [i for i, o in enumerate(self.outputs) if o is not None]

    def pick(self, column: list[Any], rows: list[int]) -> list[Any]:
        return [column[i] for i in rows]

    def fill(self, rows: list[int], scores: Mapping[str, list[Any]]) -> None:
        for name, column in scores.items():
            for i, value in zip(rows, column, strict=True):
                self.values[name][i] = None if value is None else float(value)

    def note_missing_inputs(self, group: str) -> None:
        """The note of a group that needs an output and references."""
        for i, output in enumerate(self.outputs):
            reason = NO_OUTPUT if output is None else None if self.references[i] else NO_REFERENCES
            if reason:
                self.notes[i][group] = reason

    def evidence_support(self) -> dict[int, dict[str, float | None]]:
        """How well the evidence supports each output (``hallucination_components``): it
        feeds both the hallucination index and answer_correctness, so it is computed once."""
        if not self.support:
            for i in self.with_output:
                self.support[i] = hallucination_components(
                    self.outputs[i], self.prompts[i], self.contexts[i], self.references[i]
                )
        return self.support


GroupScorer = Callable[[_Rows, MetricConfig, ScoringContext], None]


def score_batch(
    batch: pd.DataFrame, config: MetricConfig, context: ScoringContext | None = None
) -> pd.DataFrame:
    """Metrics for every row of ``batch``, in its order (see the module docstring): each
    enabled group's scorer fills its columns and notes; the time each took is added to
    ``context.timings``."""
    context = context or ScoringContext()
    rows = _Rows.of(batch, config)
    for group in config.groups:
        start = time.perf_counter()
        GROUP_SCORERS[group](rows, config, context)
        context.timings[group] = context.timings.get(group, 0.0) + time.perf_counter() - start
    result = pd.DataFrame({Col.EXAMPLE_ID: batch[Col.EXAMPLE_ID].to_numpy()})
    for name, column in rows.values.items():
        result[name] = np.array([np.nan if v is None else v for v in column], dtype="float64")
    result[METRIC_NOTES] = rows.notes
    return result


def _rouge(rows: _Rows, config: MetricConfig, context: ScoringContext) -> None:
    rows.note_missing_inputs("rouge")
    both = rows.both
    if both:
        rows.fill(
            both,
            rouge_scores(
                rows.pick(rows.outputs, both),
                rows.pick(rows.references, both),
                config.rouge_use_stemmer,
                config.rouge_split_sentences,
            ),
        )


def _correctness(rows: _Rows, config: MetricConfig, context: ScoringContext) -> None:
    rows.note_missing_inputs("correctness")
    both = rows.both
    if both:
        support = rows.evidence_support()
        rows.fill(
            both,
            correctness_scores(
                rows.pick(rows.outputs, both),
                rows.pick(rows.references, both),
                [fabrication(support[i]) for i in both],
                config.correctness_weights,
                config.correctness_penalty,
                config.embedding_model,
                config.embedding_batch_size,
            ),
        )


def _judge(rows: _Rows, config: MetricConfig, context: ScoringContext) -> None:
    from llm_eval_pipeline.core.metrics.judge import judge_rows

    rows.note_missing_inputs("judge")
    both = rows.both
    if not both:
        return
    judged = judge_rows(
        rows.pick(rows.prompts, both),
        rows.pick(rows.outputs, both),
        rows.pick(rows.references, both),
        config.judge,
    )
    for k, i in enumerate(both):
        rows.values["judge_correctness"][i] = judged.scores[k]
        for name, spent in (("judge_prompt_tokens", judged.prompt_tokens),
                            ("judge_output_tokens", judged.output_tokens)):  # fmt: skip
            rows.values[name][i] = None if spent[k] is None else float(spent[k])
        if judged.notes[k]:
            rows.notes[i]["judge"] = judged.notes[k]


def _hallucination(rows: _Rows, config: MetricConfig, context: ScoringContext) -> None:
    for i, output in enumerate(rows.outputs):
        if output is None:
            rows.notes[i]["hallucination"] = NO_OUTPUT
    with_output = rows.with_output
    if not with_output:
        return
    support = rows.evidence_support()
    rows.fill(
        with_output,
        hallucination_scores(
            rows.pick(rows.outputs, with_output),
            [support[i] for i in with_output],
            rows.pick(rows.prompts, with_output),
            rows.pick(rows.contexts, with_output),
            rows.pick(rows.references, with_output),
            config.hallucination_weights,
            context.nli,
        ),
    )
    if context.nli is None:
        for i in with_output:
            rows.notes[i]["nli_contradiction"] = "no NLI model configured"


def _own_logprobs(batch: pd.DataFrame) -> list[tuple[float, int] | None]:
    """Each row's (output log-probability sum, tokens) as the generating endpoint
    returned them, or None."""
    if Col.OUTPUT_LOGPROB not in batch or Col.OUTPUT_LOGPROB_TOKENS not in batch:
        return [None] * len(batch)
    return [
        None if _missing(lp) or _missing(k) or not k else (float(lp), int(k))
        for lp, k in zip(batch[Col.OUTPUT_LOGPROB], batch[Col.OUTPUT_LOGPROB_TOKENS], strict=True)
    ]


def _perplexity(rows: _Rows, config: MetricConfig, context: ScoringContext) -> None:
    """Reference and output perplexity from the scorer; the output's from the evaluated
    model's own log-probabilities instead, when its endpoint returned them."""
    prompts, contexts, outputs, references = (
        rows.prompts,
        rows.contexts,
        rows.outputs,
        rows.references,
    )
    values, notes, n = rows.values, rows.notes, len(rows.prompts)
    for i, logprob in enumerate(_own_logprobs(rows.batch)):
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


GROUP_SCORERS: dict[str, GroupScorer] = {
    "rouge": _rouge,
    "correctness": _correctness,
    "judge": _judge,
    "perplexity": _perplexity,
    "hallucination": _hallucination,
}
"""One scorer per metric group of the registry (``core.metrics.registry.SCORED_GROUPS``)."""
assert set(GROUP_SCORERS) == set(SCORED_GROUPS), "every scored group has a scorer"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _missing_list(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)
