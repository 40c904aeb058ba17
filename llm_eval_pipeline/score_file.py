"""``llm-eval score``: the metrics of a file of predictions, with the same ``score_batch``
the pipeline runs on Spark."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.aggregate import bootstrap_ci
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.metrics.config import GROUPS, MetricConfig
from llm_eval_pipeline.core.models import ModelRegistry, ModelSpec
from llm_eval_pipeline.core.schema import METRIC_NOTES, Col
from llm_eval_pipeline.core.scoring import ScoringContext, output_columns, score_batch
from llm_eval_pipeline.core.text import first_invalid_text

PREDICTION = "prediction"
CHUNK_ROWS = 256
READERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class ScoreFileError(UserError, ValueError):
    """A problem with the input or output file, naming it."""


def read_table(path: Path) -> pd.DataFrame:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise ScoreFileError(f"{path}: unknown format (use {', '.join(READERS)})")
    if not path.exists():
        raise ScoreFileError(f"{path}: file not found")
    try:
        if kind == "jsonl":
            return _read_jsonl(path)
        if kind == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise ScoreFileError(f"{path}: cannot read: {exc}") from exc


def _read_jsonl(path: Path) -> pd.DataFrame:
    """One record per non-blank line, parsed by ``json`` exactly (pandas' reader drops a
    lone surrogate escape without a word, which would score altered text)."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoreFileError(f"{path} row {number}: invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise ScoreFileError(f"{path} row {number}: expected a JSON object")
            records.append(record)
    return pd.DataFrame.from_records(records)


def text_of(value: object) -> str | None:
    """A cell as text; None for a missing value (None or NaN)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def references_of(value: object) -> list[str]:
    """A cell's references: a list, a JSON list in a string, one string, or none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
                if isinstance(parsed, list):
                    return [str(v) for v in parsed]
            except json.JSONDecodeError:
                pass
        return [value] if value else []
    return [str(v) for v in value]  # type: ignore[union-attr]


def to_batch(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The scoring batch columns from a user's file, or an error naming what is missing."""
    if PREDICTION not in frame.columns:
        raise ScoreFileError(f"{path}: no '{PREDICTION}' column (found {list(frame.columns)})")
    # Without a reference column every row is reference-free: the hallucination group
    # scores the output against the prompt and context; ROUGE and correctness are null
    # with the reason in metric_notes.
    ref_columns = [c for c in ("references", "reference") if c in frame.columns]
    _check_unicode(frame, path)
    n = len(frame)
    return pd.DataFrame(
        {
            Col.EXAMPLE_ID: [str(i) for i in range(n)],
            Col.PROMPT: frame[Col.PROMPT].fillna("").astype(str) if Col.PROMPT in frame else "",
            Col.CONTEXT: frame.get(Col.CONTEXT, None),
            Col.REFERENCES: [
                next((refs for c in ref_columns if (refs := references_of(row[c]))), [])
                for _, row in frame.iterrows()
            ],
            Col.OUTPUT: [text_of(v) for v in frame[PREDICTION]],
        }
    )


def _check_unicode(frame: pd.DataFrame, path: Path) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``),
    naming the row (1-based, as in the file) and the column."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        for row, value in enumerate(frame[column], start=1):
            if isinstance(value, str | list | dict) and (found := first_invalid_text(value)):
                raise ScoreFileError(
                    f"{path} row {row} field '{column}': holds {found[1]}, half of a UTF-16 "
                    "surrogate pair (text cut inside a character): not valid Unicode"
                )


def model_spec(name_or_path: str, registry: ModelRegistry) -> ModelSpec:
    """A registered model by name, or a model folder. A registry that cannot be read
    raises its own error (naming the file), not "neither a model nor a path"."""
    registered = {spec.name: spec for spec in registry.load()}
    if name_or_path in registered:
        return registered[name_or_path]
    if not Path(name_or_path).exists():
        raise ScoreFileError(f"--model {name_or_path!r} is neither a registered model nor a path")
    return ModelSpec("scorer", "transformers", {"path": str(Path(name_or_path).resolve())})


def score_file(
    input_path: Path,
    output_path: Path,
    groups: list[str] | None,
    model: str | None,
    registry: ModelRegistry,
    nli_model: str | None = None,
) -> pd.DataFrame:
    """Score ``input_path`` into ``output_path``; print the summary; return the scores."""
    from tqdm import tqdm

    if output_path.suffix.lower() not in READERS:
        raise ScoreFileError(f"{output_path}: unknown output format (use {', '.join(READERS)})")
    frame = read_table(input_path)
    batch = to_batch(frame, input_path)
    chosen = groups or [g for g in ("rouge", "correctness", "hallucination") if g in GROUPS]
    if groups is None and model:
        chosen.append("perplexity")
    unknown = set(chosen) - set(GROUPS)
    if unknown:
        raise ScoreFileError(f"--metrics: unknown groups {sorted(unknown)} (from {GROUPS})")
    if "perplexity" in chosen and not model:
        raise ScoreFileError("--metrics perplexity needs --model NAME_OR_PATH")
    if "judge" in chosen:
        raise ScoreFileError("the judge group runs in the pipeline (judge_* in config.yaml)")
    config = MetricConfig(groups=tuple(chosen), nli_model=nli_model)
    context = ScoringContext()
    if nli_model and "hallucination" in chosen:
        from llm_eval_pipeline.core.metrics.hallucination import NliScorer

        context.nli = NliScorer(nli_model)
    if model and "perplexity" in chosen:
        from llm_eval_pipeline.core.backends import load_backend
        from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer

        spec = model_spec(model, registry)
        backend = load_backend(spec)
        context.perplexity = PerplexityScorer(
            backend.model,
            backend.tokenizer,
            spec.generation.render,  # type: ignore[attr-defined]
        )
    parts = []
    chunks = range(0, len(batch), CHUNK_ROWS)
    for start in tqdm(
        chunks, desc="scoring", unit="chunk", disable=len(chunks) < 4, file=sys.stderr
    ):
        parts.append(score_batch(batch.iloc[start : start + CHUNK_ROWS], config, context))
    scores = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[Col.EXAMPLE_ID, *output_columns(config), METRIC_NOTES])
    )
    result = frame.reset_index(drop=True).copy()
    for column in output_columns(config):
        result[column] = scores[column].to_numpy()
    result[METRIC_NOTES] = [json.dumps(n, sort_keys=True) for n in scores[METRIC_NOTES]]
    write_table(result, output_path)
    print_summary(result, output_columns(config), output_path)
    return result


def write_table(frame: pd.DataFrame, path: Path) -> None:
    kind = READERS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def print_summary(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    print(f"Scored {len(frame)} rows into {path}")
    print(f"  {'metric':<28}{'mean':>10}{'95% CI':>24}{'rows':>8}")
    for column in columns:
        values = frame[column].to_numpy(dtype="float64")
        valid = values[~np.isnan(values)]
        if not valid.size:
            print(f"  {column:<28}{'-':>10}{'':>24}{0:>8}")
            continue
        low, high = bootstrap_ci(valid)
        interval = f"[{low:.4g}, {high:.4g}]"
        print(f"  {column:<28}{valid.mean():>10.4g}{interval:>24}{valid.size:>8}")
