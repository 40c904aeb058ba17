"""LLM-as-judge correctness: an OpenAI-compatible model decides whether an answer is right.

Definition: for each row the judge model gets the question, the reference answer(s) and the
candidate answer (prompt ``JUDGE_PROMPT_TEMPLATE``, version ``JUDGE_PROMPT_VERSION`` =
"judge-v1") and replies with one word. The score is 1.0 for CORRECT (the candidate states the
same answer as a reference; extra correct detail is fine) and 0.0 for INCORRECT (it
contradicts the references or gives no answer). The verdict is read case-insensitively from
the first word of the reply, so "INCORRECT." is 0.0 and never mistaken for CORRECT. Rows that
cannot be judged score None with a note: ``prediction missing``, ``no references``,
``judge error: <error>`` (after the backend's retries) or ``unparsable verdict: <reply>``.

The metric is off by default: it runs only when the "judge" metric group is enabled with a
``JudgeConfig`` naming the endpoint. Requests go through ``OpenAIBackend`` (retries, bounded
concurrency, timeouts, per-row errors, key scrubbing) with temperature 0 and at most 4 new
tokens.

Cache: with ``JudgeConfig.cache_dir`` set, verdicts are kept in ``<cache_dir>/judge_cache.sqlite``
keyed by the SHA-256 of [prompt version, judge model, base_url, question, sorted references,
prediction]; only real verdicts (1.0/0.0) are stored, never errors or unparsable replies, so
a re-run with the same inputs sends no request at all. Each call of ``judge_correctness``
opens its own sqlite connection (with a lock timeout), so threads and processes may share
the folder. Without ``cache_dir`` nothing is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_eval_pipeline.core.backends.base import GenerationInput
from llm_eval_pipeline.core.backends.openai_backend import OpenAIBackend
from llm_eval_pipeline.core.metrics.spec import HIGHER, NEITHER, NON_NEGATIVE, UNIT, MetricSpec
from llm_eval_pipeline.core.models import ModelSpec, parse_spec

if TYPE_CHECKING:
    from llm_eval_pipeline.core.metrics.config import JudgeConfig

log = logging.getLogger(__name__)

GROUP = "judge"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("judge_correctness", GROUP, HIGHER, UNIT,
               "1.0 when the judge model calls the answer CORRECT against the references"),
    MetricSpec("judge_prompt_tokens", GROUP, NEITHER, NON_NEGATIVE,
               "prompt tokens this row's judge verdict cost when asked (0: shared with an "
               "identical row), from the endpoint's usage"),
    MetricSpec("judge_output_tokens", GROUP, NEITHER, NON_NEGATIVE,
               "output tokens of this row's judge request (0 as above)"),
)  # fmt: skip

JUDGE_PROMPT_VERSION = "judge-v1"
JUDGE_PROMPT_TEMPLATE = (
    "You are grading answers to questions.\n"
    "Decide whether the candidate answer states the same answer as one of the reference "
    "answers. Extra correct detail is fine. A candidate that contradicts the references, or "
    "that does not give an answer, is incorrect.\n"
    "\n"
    "Question: {question}\n"
    "Reference answer(s):\n"
    "{references}\n"
    "Candidate answer: {candidate}\n"
    "\n"
    "Reply with exactly one word: CORRECT or INCORRECT."
)
JUDGE_MAX_NEW_TOKENS = 4
JUDGE_BACKOFF_S = 0.5  # first retry delay of the backend, doubled per retry
CACHE_FILE = "judge_cache.sqlite"
CACHE_TIMEOUT_S = 30.0
_SQL_CHUNK = 500  # host parameters per query, below sqlite's oldest limit (999)
_NOTE_REPLY_CHARS = 50
_FIRST_WORD = re.compile(r"[^A-Za-z0-9]*([A-Za-z]+)")
_VERDICTS = {"CORRECT": 1.0, "INCORRECT": 0.0}


def build_judge_prompt(question: str, references: Sequence[str], prediction: str) -> str:
    """The judge's input for one row (references are listed one per line, sorted)."""
    listed = "\n".join(f"- {ref}" for ref in sorted(references))
    return JUDGE_PROMPT_TEMPLATE.format(question=question, references=listed, candidate=prediction)


def parse_verdict(reply: str) -> float | None:
    """1.0 for CORRECT, 0.0 for INCORRECT (first word, any case/punctuation), else None."""
    match = _FIRST_WORD.match(reply)
    if match is None:
        return None
    return _VERDICTS.get(match.group(1).upper())


def verdict_key(
    config: JudgeConfig, question: str, references: Sequence[str], prediction: str
) -> str:
    """Content hash that identifies one verdict in the cache."""
    payload = [
        JUDGE_PROMPT_VERSION,
        config.model,
        config.base_url,
        question,
        sorted(references),
        prediction,
    ]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_correctness(
    questions: Sequence[str],
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    config: JudgeConfig,
) -> tuple[list[float | None], list[str | None]]:
    """Judge each prediction against its references; returns (scores, notes) in input
    order (:func:`judge_rows` without the token counts)."""
    judged = judge_rows(questions, predictions, references, config)
    return judged.scores, judged.notes


@dataclass(frozen=True)
class Judged:
    """Per row, in input order: the score, the note, and the prompt and output tokens its
    verdict's request cost (a cached verdict counts what it cost when it was asked, so a
    re-run gives the same numbers; 0 for a row that shared an identical row's request;
    None where the endpoint reported no usage)."""

    scores: list[float | None]
    notes: list[str | None]
    prompt_tokens: list[int | None]
    output_tokens: list[int | None]


def judge_rows(
    questions: Sequence[str],
    predictions: Sequence[str | None],
    references: Sequence[Sequence[str]],
    config: JudgeConfig,
) -> Judged:
    """Judge each prediction against its references.

    A score is 1.0 (CORRECT), 0.0 (INCORRECT) or None (not judged; its note says why).
    Notes are None for judged rows. Identical rows share one request; cached verdicts (see
    the module docstring) are reused without any request. Raises ValueError when the three
    sequences differ in length or the judge endpoint is misconfigured.
    """
    count = len(questions)
    if len(predictions) != count or len(references) != count:
        raise ValueError(
            f"judge_correctness needs aligned inputs: {count} questions, "
            f"{len(predictions)} predictions, {len(references)} reference lists"
        )
    scores: list[float | None] = [None] * count
    notes: list[str | None] = [None] * count
    spent: tuple[list[int | None], list[int | None]] = ([0] * count, [0] * count)
    # hash -> (prompt, row indices); rows with the same content share one verdict.
    wanted: dict[str, tuple[str, list[int]]] = {}
    for i, (question, prediction, refs) in enumerate(
        zip(questions, predictions, references, strict=True)
    ):
        if not isinstance(prediction, str):
            notes[i] = "prediction missing"
            continue
        refs_list = [refs] if isinstance(refs, str) else list(refs or [])
        usable = [r for r in refs_list if isinstance(r, str) and r.strip()]
        if not usable:
            notes[i] = "no references"
            continue
        question_text = "" if question is None else str(question)
        key = verdict_key(config, question_text, usable, prediction)
        if key not in wanted:
            wanted[key] = (build_judge_prompt(question_text, usable, prediction), [])
        wanted[key][1].append(i)
    if not wanted:
        return Judged(scores, notes, *spent)

    connection = _open_cache(config.cache_dir) if config.cache_dir else None
    try:
        cached = _cache_get(connection, list(wanted)) if connection is not None else {}
        for key, (verdict, tokens) in cached.items():
            for i in wanted[key][1]:
                scores[i] = verdict
            # what the verdict cost when it was asked, so a re-run gives the same table
            first = wanted[key][1][0]
            spent[0][first], spent[1][first] = tokens
        pending = [key for key in wanted if key not in cached]
        log.info(
            "judge %s: %d distinct rows, %d cached, %d to ask",
            config.model,
            len(wanted),
            len(cached),
            len(pending),
        )
        if not pending:
            return Judged(scores, notes, *spent)
        backend = OpenAIBackend(_judge_spec(config))
        outputs = backend.generate(
            [GenerationInput(f"judge-{key[:16]}", wanted[key][0]) for key in pending]
        )
        fresh: dict[str, tuple[float, tuple[int | None, int | None]]] = {}
        for key, output in zip(pending, outputs, strict=True):
            first = wanted[key][1][0]
            spent[0][first], spent[1][first] = output.prompt_tokens, output.output_tokens
            note: str | None = None
            verdict: float | None = None
            if output.error is not None or output.output is None:
                note = f"judge error: {output.error or 'no output'}"
            else:
                verdict = parse_verdict(output.output)
                if verdict is None:
                    note = f"unparsable verdict: {output.output.strip()[:_NOTE_REPLY_CHARS]}"
                else:
                    fresh[key] = (verdict, (output.prompt_tokens, output.output_tokens))
            for i in wanted[key][1]:
                scores[i] = verdict
                notes[i] = note
        if connection is not None and fresh:
            _cache_put(connection, fresh)
        return Judged(scores, notes, *spent)
    finally:
        if connection is not None:
            connection.close()


# ---------------------------------------------------------------------- helpers


def _judge_spec(config: JudgeConfig) -> ModelSpec:
    options: dict[str, Any] = {
        "base_url": config.base_url,
        "model": config.model,
        "timeout_s": config.timeout_s,
        "max_retries": config.max_retries,
        "max_concurrency": config.max_concurrency,
        "backoff_s": JUDGE_BACKOFF_S,
    }
    if config.api_key_env:
        options["api_key_env"] = config.api_key_env
    return parse_spec(
        {
            "name": "judge",
            "backend": "openai",
            "options": options,
            "generation": {
                "max_new_tokens": JUDGE_MAX_NEW_TOKENS,
                "temperature": 0.0,
                "prompt_template": "{prompt}",
            },
        },
        where="judge endpoint",
    )


def _open_cache(cache_dir: str) -> sqlite3.Connection:
    folder = Path(cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(folder / CACHE_FILE, timeout=CACHE_TIMEOUT_S)
    try:
        with connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS judge_cache ("
                "hash TEXT PRIMARY KEY, verdict REAL NOT NULL, created_at TEXT NOT NULL, "
                "prompt_tokens INTEGER, output_tokens INTEGER)"
            )
            columns = {row[1] for row in connection.execute("PRAGMA table_info(judge_cache)")}
            for column in ("prompt_tokens", "output_tokens"):  # a cache from before tokens
                if column not in columns:
                    connection.execute(f"ALTER TABLE judge_cache ADD COLUMN {column} INTEGER")
    except BaseException:
        connection.close()
        raise
    return connection


def _cache_get(
    connection: sqlite3.Connection, keys: list[str]
) -> dict[str, tuple[float, tuple[int | None, int | None]]]:
    """Cached verdicts with the prompt and output tokens their request cost."""
    found: dict[str, tuple[float, tuple[int | None, int | None]]] = {}
    for start in range(0, len(keys), _SQL_CHUNK):
        chunk = keys[start : start + _SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = (
            "SELECT hash, verdict, prompt_tokens, output_tokens FROM judge_cache "
            f"WHERE hash IN ({marks})"
        )
        with closing(connection.execute(query, chunk)) as cursor:
            for key, verdict, prompt_tokens, output_tokens in cursor.fetchall():
                if verdict in (0.0, 1.0):
                    found[key] = (float(verdict), (prompt_tokens, output_tokens))
    return found


def _cache_put(
    connection: sqlite3.Connection,
    verdicts: dict[str, tuple[float, tuple[int | None, int | None]]],
) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows = [(key, v, now, p, o) for key, (v, (p, o)) in verdicts.items()]
    try:
        with connection:
            connection.executemany(
                "INSERT OR REPLACE INTO judge_cache "
                "(hash, verdict, created_at, prompt_tokens, output_tokens) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
    except sqlite3.Error as exc:  # the verdicts are still returned; only reuse is lost
        log.warning("judge cache: could not store %d verdicts: %s", len(rows), exc)
