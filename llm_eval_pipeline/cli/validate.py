"""``llm-eval validate-metric``: how well the hallucination scores separate a labelled
file's answers, with and without references, beside the answer-length baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.metrics.calibration import shipped
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.hallucination import combine, hallucination_components
from llm_eval_pipeline.core.validation import (
    answer_length,
    pair_accuracy,
    precision_recall,
    roc_auc,
)
from llm_eval_pipeline.score_file import read_table, references_of, text_of

PROMPT_COLUMNS = ("prompt", "question")
OUTPUT_COLUMNS = ("prediction", "answer", "output")
REFERENCE_COLUMNS = ("reference", "references")


def _pick(frame: pd.DataFrame, wanted: str | None, choices: tuple[str, ...], path: Path) -> str:
    names = (wanted,) if wanted else choices
    found = next((c for c in names if c in frame.columns), None)
    if found is None:
        raise UserError(f"{path}: no {' or '.join(repr(c) for c in names)} column")
    return found


def validate_metric(
    path: Path,
    label_column: str,
    positive: str,
    output_column: str | None = None,
    group_column: str | None = None,
) -> dict[str, dict[str, float]]:
    """Print and return the figures for ``path``: per setting (with references, where
    the file has them, and reference-free) and score, ROC AUC, same-group pair accuracy
    and ties, and precision and recall of ``hallucinated`` at the shipped threshold."""
    frame = read_table(path)
    if label_column not in frame.columns:
        raise UserError(f"{path}: no {label_column!r} column (found {list(frame.columns)})")
    prompt = _pick(frame, None, PROMPT_COLUMNS, path)
    output = _pick(frame, output_column, OUTPUT_COLUMNS, path)
    group = group_column or ("group" if "group" in frame.columns else prompt)
    ref_column = next((c for c in REFERENCE_COLUMNS if c in frame.columns), None)
    labels = [str(v) == positive for v in frame[label_column]]
    if not any(labels) or all(labels):
        raise UserError(f"{path}: {label_column!r} needs rows labelled {positive!r} and others")
    calibration, weights = shipped(), MetricConfig().hallucination_weights
    groups = [str(v) for v in frame[group]]
    lengths = [answer_length(text_of(v)) for v in frame[output]]
    settings = {"reference-free": False}
    if ref_column is not None:
        settings = {"with references": True, **settings}
    report: dict[str, dict[str, float]] = {}
    print(f"{path}: {len(frame)} rows, {sum(labels)} labelled {positive!r}")
    print(f"  {'setting':<16}{'score':<28}{'ROC AUC':>8}{'pairs right':>13}{'ties':>7}")
    for setting, use_refs in settings.items():
        index, probability = [], []
        for _, row in frame.iterrows():
            answer = text_of(row[output])
            if answer is None:
                index.append(math.nan)
                probability.append(math.nan)
                continue
            refs = references_of(row[ref_column]) if use_refs and ref_column else []
            context = text_of(row["context"]) if "context" in frame.columns else None
            parts = hallucination_components(answer, text_of(row[prompt]) or "", context, refs)
            index.append(combine(parts, weights))
            probability.append(calibration.probability(parts))
        scores = {
            "hallucination_probability": probability,
            "hallucination_index": index,
            "answer length (baseline)": lengths,
        }
        for name, values in scores.items():
            pairs = pair_accuracy(values, labels, groups)
            auc = roc_auc(values, labels)
            report[f"{setting}: {name}"] = {
                "roc_auc": auc, "pairs_right": pairs.right, "pair_ties": pairs.ties,
            }  # fmt: skip
            print(f"  {setting:<16}{name:<28}{auc:>8.3f}{pairs.right:>13.3f}{pairs.ties:>7.3f}")
        flagged = precision_recall(probability, labels, calibration.threshold)
        report[f"{setting}: hallucinated"] = {
            "precision": flagged.precision, "recall": flagged.recall,
        }  # fmt: skip
        print(
            f"  {setting:<16}hallucinated (p >= {calibration.threshold:g}): precision "
            f"{flagged.precision:.3f}, recall {flagged.recall:.3f}, {flagged.flagged} flagged"
        )
    return report
