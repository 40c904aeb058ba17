"""The LLM-as-judge metric against a real local OpenAI-compatible server scripted per test."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from llm_eval_pipeline.core.metrics import judge
from llm_eval_pipeline.core.metrics.config import JudgeConfig
from llm_eval_pipeline.core.metrics.judge import (
    CACHE_FILE,
    JUDGE_PROMPT_TEMPLATE,
    JUDGE_PROMPT_VERSION,
    build_judge_prompt,
    judge_correctness,
)
from llm_eval_pipeline_tests.openai_server import FakeServer, Received, Step, serve

KEY = "sk-judge-PLANTED-42"
KEY_ENV = "LLM_EVAL_TEST_JUDGE_KEY"
QUESTION = "What is the capital of France?"


def candidate_of(prompt: str) -> str:
    """The candidate line of a judge prompt, as the scripted judge sees it."""
    lines = [line for line in prompt.splitlines() if line.startswith("Candidate answer:")]
    assert len(lines) == 1, prompt
    return lines[0]


def paris_rule(prompt: str) -> str:
    return "CORRECT" if "Paris" in candidate_of(prompt) else "INCORRECT"


@dataclass
class FakeJudge(FakeServer):
    """Answers chat completions with ``rule(prompt)``, or ``status`` != 200 with an error."""

    rule: Callable[[str], str] = paris_rule
    status: int = 200

    def enter(self, received: Received) -> Step:
        super().enter(received)
        if self.status != 200:
            return {"status": self.status, "body": {"error": "judge is down"}}
        verdict = self.rule(received.prompt)
        choices = [{"message": {"content": verdict}, "finish_reason": "stop"}]
        usage = {"prompt_tokens": len(received.prompt.split()), "completion_tokens": 1}
        return {"body": {"choices": choices, "usage": usage}}

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    @property
    def headers(self) -> list[dict[str, str]]:
        return [r.headers for r in self.requests]

    def prompts(self) -> list[str]:
        with self.lock:
            return [r.prompt for r in self.requests]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudge]:
    with serve(FakeJudge(), monkeypatch) as fake:
        yield fake


def make_config(server: FakeJudge, **changes: Any) -> JudgeConfig:
    config = JudgeConfig(base_url=server.url, model="judge-model", timeout_s=5, max_retries=1)
    return replace(config, **changes)


def cached_rows(cache_dir: Path) -> list[tuple[str, float, str]]:
    with sqlite3.connect(cache_dir / CACHE_FILE) as connection:
        return connection.execute("SELECT hash, verdict, created_at FROM judge_cache").fetchall()


# ---------------------------------------------------------------------- tests


def test_verdicts_map_to_scores_and_requests_are_deterministic(server: FakeJudge) -> None:
    predictions = ["It is Paris, on the Seine.", "Lyon"]
    references = [["Paris", "Paris, France"], ["Paris"]]

    scores, notes = judge_correctness(
        [QUESTION, QUESTION], predictions, references, make_config(server)
    )

    assert scores == [1.0, 0.0]
    assert notes == [None, None]
    assert server.count == 2
    assert JUDGE_PROMPT_VERSION == "judge-v1"
    assert "CORRECT or INCORRECT" in JUDGE_PROMPT_TEMPLATE
    for body in server.bodies:
        assert body["temperature"] == 0
        assert body["max_tokens"] == 4
        assert body["model"] == "judge-model"
    for header in server.headers:
        assert "authorization" not in header, "no api_key_env, no key sent"
    prompts = sorted(server.prompts(), key=lambda p: "Lyon" in p)
    assert prompts[0] == build_judge_prompt(QUESTION, references[0], predictions[0])
    assert prompts[1] == build_judge_prompt(QUESTION, references[1], predictions[1])
    for prompt, prediction in zip(prompts, predictions, strict=True):
        assert QUESTION in prompt
        assert "- Paris" in prompt
        assert candidate_of(prompt) == f"Candidate answer: {prediction}"
        assert prompt.rstrip().endswith("Reply with exactly one word: CORRECT or INCORRECT.")


def test_api_key_env_is_sent_as_bearer(server: FakeJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)

    scores, _ = judge_correctness(
        [QUESTION], ["Paris"], [["Paris"]], make_config(server, api_key_env=KEY_ENV)
    )

    assert scores == [1.0]
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_cache_skips_repeat_requests_and_keys_on_content(
    server: FakeJudge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "nested" / "judge-cache"
    config = make_config(server, cache_dir=str(cache_dir))
    questions = [QUESTION, QUESTION]
    predictions = ["Paris", "Marseille"]
    references = [["Paris", "City of Paris"], ["Paris"]]

    first = judge_correctness(questions, predictions, references, config)
    assert first == ([1.0, 0.0], [None, None])
    assert server.count == 2
    rows = cached_rows(cache_dir)
    assert sorted(verdict for _, verdict, _ in rows) == [0.0, 1.0]
    assert all(len(key) == 64 and created for key, _, created in rows)

    again = judge_correctness(questions, predictions, references, config)
    assert again == first
    assert server.count == 2, "a re-run with the same inputs makes no request"
    # and counts the tokens the cached verdicts cost when asked: the same table again
    asked = judge.judge_rows(questions, ["Paris", "Lyon"], references, config)
    reread = judge.judge_rows(questions, ["Paris", "Lyon"], references, config)
    assert reread.prompt_tokens == asked.prompt_tokens and all(asked.prompt_tokens)
    assert reread.output_tokens == asked.output_tokens == [1, 1]
    assert server.count == 3, "Lyon asked once"

    # Reference order does not matter; the key sorts them.
    reordered = [["City of Paris", "Paris"], ["Paris"]]
    assert judge_correctness(questions, predictions, reordered, config) == first
    assert server.count == 3

    changed = judge_correctness(questions, ["Paris", "Paris, of course"], references, config)
    assert changed == ([1.0, 1.0], [None, None])
    assert server.count == 4, "only the changed prediction is asked"

    # A new prompt version invalidates the cached verdicts.
    monkeypatch.setattr(judge, "JUDGE_PROMPT_VERSION", "judge-v2")
    judge_correctness(questions, predictions, references, config)
    assert server.count == 6


def test_without_cache_dir_every_call_asks_and_duplicates_share_a_request(
    server: FakeJudge,
) -> None:
    config = make_config(server)

    scores, _ = judge_correctness([QUESTION] * 3, ["Paris"] * 3, [["Paris"]] * 3, config)
    assert scores == [1.0, 1.0, 1.0]
    assert server.count == 1, "identical rows share one request"
    # its tokens are counted once, on the first row (the fake reports 1 output token)
    judged = judge.judge_rows([QUESTION] * 2 + [None], ["Paris"] * 2 + [None], [["Paris"]] * 3,
                              config)  # fmt: skip
    assert judged.output_tokens == [1, 0, 0] and judged.prompt_tokens[0] > 0
    assert judged.prompt_tokens[1:] == [0, 0] and judged.notes[2] == "prediction missing"

    judge_correctness([QUESTION], ["Paris"], [["Paris"]], config)
    assert server.count == 3, "no cache without cache_dir"


def test_missing_prediction_or_references_are_not_judged(server: FakeJudge, tmp_path: Path) -> None:
    config = make_config(server, cache_dir=str(tmp_path))

    scores, notes = judge_correctness(
        [QUESTION] * 3, [None, "Paris", "Paris"], [["Paris"], [], ["", "  "]], config
    )

    assert scores == [None, None, None]
    assert notes == ["prediction missing", "no references", "no references"]
    assert server.count == 0


def test_judge_errors_give_none_and_are_not_cached(server: FakeJudge, tmp_path: Path) -> None:
    server.status = 500
    config = make_config(server, cache_dir=str(tmp_path), max_retries=1)

    started = time.perf_counter()
    scores, notes = judge_correctness([QUESTION], ["Paris"], [["Paris"]], config)
    elapsed = time.perf_counter() - started

    assert scores == [None]
    assert notes[0] is not None and notes[0].startswith("judge error: ")
    assert "HTTP 500" in notes[0] and "2 attempts" in notes[0]
    assert server.count == 2, "one retry after the first attempt"
    assert elapsed < 3.0
    assert cached_rows(tmp_path) == []

    server.status = 200
    assert judge_correctness([QUESTION], ["Paris"], [["Paris"]], config) == ([1.0], [None])
    assert server.count == 3, "the error was not cached; the judge is asked again"
    assert judge_correctness([QUESTION], ["Paris"], [["Paris"]], config) == ([1.0], [None])
    assert server.count == 3, "the successful verdict is cached"


@pytest.mark.parametrize("reply", ["Maybe", "NOT CORRECT", "INCORRECTLY", "", "?" * 80])
def test_unparsable_verdict_gives_none_with_note(
    server: FakeJudge, tmp_path: Path, reply: str
) -> None:
    server.rule = lambda prompt: reply
    config = make_config(server, cache_dir=str(tmp_path))

    scores, notes = judge_correctness([QUESTION], ["Paris"], [["Paris"]], config)

    assert scores == [None]
    assert notes == [f"unparsable verdict: {reply.strip()[:50]}"]
    judge_correctness([QUESTION], ["Paris"], [["Paris"]], config)
    assert server.count == 2, "unparsable replies are not cached"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("INCORRECT.", 0.0),
        ("incorrect", 0.0),
        (" Incorrect\n", 0.0),
        ("**INCORRECT**", 0.0),
        ("INCORRECT - it is Lyon", 0.0),
        ("Correct.", 1.0),
        ("correct!", 1.0),
        ("CORRECT", 1.0),
    ],
)
def test_verdict_parsing_ignores_case_and_punctuation(
    server: FakeJudge, reply: str, expected: float
) -> None:
    server.rule = lambda prompt: reply

    scores, notes = judge_correctness([QUESTION], ["Paris"], [["Paris"]], make_config(server))

    assert scores == [expected]
    assert notes == [None]


def test_misaligned_inputs_raise() -> None:
    config = JudgeConfig(base_url="http://127.0.0.1:9/v1", model="judge-model")
    with pytest.raises(ValueError, match="aligned"):
        judge_correctness([QUESTION], ["Paris", "Lyon"], [["Paris"]], config)
