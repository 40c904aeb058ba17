"""Answer correctness: SQuAD exact match and token F1, reference token recall, semantic
similarity and their combination ``answer_correctness``.

``semantic_similarity`` is the cosine similarity of all-MiniLM-L6-v2 sentence embeddings
of the prediction and a reference (Reimers & Gurevych 2019), max over references, in
[-1, 1].

``reference_token_recall`` is the share of the reference's content words (Porter-stemmed,
stopwords removed, number words and thousands separators normalised) present in the
prediction, max over references.

``answer_correctness`` in [0, 1] is

    max(exact_match, sum_i w_i * c_i / sum_i w_i) * (1 - p * min(1, fabrication))

over the components ``reference_token_recall`` (is the reference's answer in the
prediction?), ``token_f1`` (how much else the prediction says) and
``max(0, semantic_similarity)`` (does it mean the same?), with weights 0.6 / 0.2 / 0.2 by
default (``MetricConfig.correctness_weights``), where ``fabrication`` =
``unsupported_fact_share + contradiction + 0.5 * unsupported_content_share`` (see
``hallucination``) and ``p`` = ``MetricConfig.correctness_penalty`` (1.0). Recall
carries most weight so that a correct long-form answer to a short reference ("The capital
of France is Paris." vs "Paris") scores high, while a fluent wrong answer shares no
reference token and scores low; an answer that states the reference but adds facts the
evidence does not hold is marked down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from llm_eval_pipeline.core.metrics.embeddings import embed
from llm_eval_pipeline.core.metrics.hallucination import reference_recall
from llm_eval_pipeline.core.metrics.spec import HIGHER, UNIT, MetricSpec
from llm_eval_pipeline.core.metrics.squad import squad_scores

GROUP = "correctness"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("exact_match", GROUP, HIGHER, UNIT,
               "1.0 when the normalised answer equals a reference's (SQuAD v1.1)"),
    MetricSpec("token_f1", GROUP, HIGHER, UNIT,
               "token F1 with the best reference (SQuAD v1.1)"),
    MetricSpec("reference_token_recall", GROUP, HIGHER, UNIT,
               "share of the best reference's content words in the answer"),
    MetricSpec("semantic_similarity", GROUP, HIGHER, (-1.0, 1.0),
               "cosine of all-MiniLM-L6-v2 embeddings, best reference (Reimers & Gurevych "
               "2019)"),
    MetricSpec("answer_correctness", GROUP, HIGHER, UNIT,
               "weighted recall, F1 and similarity (at least EM), less fabrication"),
)  # fmt: skip


def semantic_similarity(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    model_path: str | None = None,
    batch_size: int = 64,
) -> list[float]:
    """Max cosine similarity of each prediction to its references, in [-1, 1]; each
    distinct text is embedded once. The float32 dot product of unit vectors can exceed 1
    by a rounding step (1.0000002 for identical texts), so it is clipped."""
    texts = list(dict.fromkeys([*predictions, *(r for refs in references for r in refs)]))
    index = {text: i for i, text in enumerate(texts)}
    vectors = embed(texts, model_path, batch_size)
    scores = []
    for prediction, refs in zip(predictions, references, strict=True):
        p = vectors[index[prediction]]
        sims = [float(np.dot(p, vectors[index[r]])) for r in refs]
        scores.append(min(1.0, max(-1.0, max(sims))))
    return scores


def combine(components: Mapping[str, float], exact: float, weights: Mapping[str, float]) -> float:
    total = sum(weights.values())
    values = {**components, "semantic_similarity": max(0.0, components["semantic_similarity"])}
    weighted = sum(w * values[name] for name, w in weights.items()) / total if total else 0.0
    return float(min(1.0, max(exact, weighted)))


def fabrication(components: Mapping[str, float | None]) -> float:
    return min(
        1.0,
        (components["unsupported_fact_share"] or 0.0)
        + (components["contradiction"] or 0.0)
        + 0.5 * (components["unsupported_content_share"] or 0.0),
    )


def correctness_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    fabrications: Sequence[float],
    weights: Mapping[str, float],
    penalty: float = 1.0,
    model_path: str | None = None,
    batch_size: int = 64,
) -> dict[str, list[float]]:
    """All correctness columns for rows that have a prediction and references;
    ``fabrications`` is each row's :func:`fabrication` (from its hallucination
    components, computed once by the caller)."""
    unknown = set(weights) - {"reference_token_recall", "token_f1", "semantic_similarity"}
    if unknown:
        raise ValueError(f"unknown answer_correctness weights {sorted(unknown)}")
    out: dict[str, list[float]] = {spec.name: [] for spec in SPECS}
    sims = semantic_similarity(predictions, references, model_path, batch_size)
    ems, f1s = squad_scores(predictions, references)
    rows = zip(predictions, references, fabrications, sims, ems, f1s, strict=True)
    for prediction, refs, made_up, sim, em, f1 in rows:
        components = {
            "reference_token_recall": reference_recall(prediction, refs),
            "token_f1": f1,
            "semantic_similarity": sim,
        }
        out["exact_match"].append(em)
        for name, value in components.items():
            out[name].append(value)
        out["answer_correctness"].append(combine(components, em, weights) * (1 - penalty * made_up))
    return out
