"""The OpenAI-compatible backend against a real local HTTP server scripted per test."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llm_eval_pipeline.core.backends.base import (
    FINISH_ERROR,
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationInput,
)
from llm_eval_pipeline.core.backends.openai_backend import OpenAIBackend
from llm_eval_pipeline.core.models import parse_spec
from llm_eval_pipeline_tests.openai_server import FakeServer, Received, clear_proxies, serve

KEY = "sk-test-PLANTED-123"
KEY_ENV = "LLM_EVAL_TEST_REMOTE_KEY"


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxies(monkeypatch)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    with serve(FakeServer(), monkeypatch) as fake:
        yield fake


def make_backend(
    url: str, generation: dict[str, Any] | None = None, **options: Any
) -> OpenAIBackend:
    opts = {"base_url": url, "model": "tiny-remote", "backoff_s": 0.01, "timeout_s": 5, **options}
    raw = {"name": "remote", "backend": "openai", "options": opts, "generation": generation or {}}
    return OpenAIBackend(parse_spec(raw))


def rows(*texts: str) -> list[GenerationInput]:
    return [GenerationInput(f"ex{i}", text) for i, text in enumerate(texts)]


def only(server: FakeServer, prompt: str) -> Received:
    found = [r for r in server.requests if r.prompt == prompt]
    assert len(found) == 1, f"expected one request for {prompt!r}, got {len(found)}"
    return found[0]


# ---------------------------------------------------------------------- tests


def test_chat_success_reads_output_usage_and_finish_reason(server: FakeServer) -> None:
    cut = {"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}]}
    server.script["second"] = [{"body": cut}]
    generation = {"max_new_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["END"]}
    backend = make_backend(server.url, generation)
    assert backend.device == "remote"

    first, second = backend.generate(rows("first", "second"))

    assert (first.output, first.prompt_tokens, first.output_tokens) == ("echo: first", 5, 2)
    assert first.finish_reason == FINISH_STOP and first.error is None
    assert first.latency_ms > 0
    assert (second.output, second.prompt_tokens, second.output_tokens) == ("cut", None, None)
    assert second.finish_reason == FINISH_LENGTH
    request = only(server, "first")
    assert request.path == "/v1/chat/completions"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.body["messages"] == [{"role": "user", "content": "first"}]
    assert request.body["model"] == "tiny-remote"
    assert request.body["max_tokens"] == 7
    assert request.body["temperature"] == 0.5
    assert request.body["top_p"] == 0.9
    assert request.body["seed"] == 3
    assert request.body["stop"] == ["END"]
    assert request.body["logprobs"] is True
    assert (first.output_logprob, first.output_logprob_tokens) == (-1.5, 2)
    assert second.output_logprob is None, "an answer without logprobs leaves them null"


def test_completions_api_sends_prompt_and_reads_text(server: FakeServer) -> None:
    backend = make_backend(server.url, api="completions")

    (out,) = backend.generate(rows("complete me"))

    assert out.output == "echo: complete me" and out.error is None
    assert out.prompt_tokens == len("complete me")
    request = only(server, "complete me")
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == "complete me"
    assert "messages" not in request.body
    assert "stop" not in request.body, "an empty stop list is not sent"
    assert request.body["logprobs"] == 0, "the chosen tokens' logprobs only"
    assert (out.output_logprob, out.output_logprob_tokens) == (-1.5, 2)


@pytest.mark.parametrize(
    "logprobs",
    [
        {"content": [{"token": "a", "logprob": 0.5}]},
        {"content": [{"token": "a", "logprob": "-1"}]},
        {"content": []},
        {"content": [{"token": "a", "logprob": float("-inf")}]},
        "none",
    ],
)
def test_unusable_logprobs_leave_the_sum_null(server: FakeServer, logprobs: object) -> None:
    body = {"choices": [{"message": {"content": "x"}, "logprobs": logprobs}]}
    server.script["q"] = [{"body": json.dumps(body, allow_nan=True).encode()}]
    (out,) = make_backend(server.url).generate(rows("q"))
    assert out.output == "x" and out.error is None and out.output_logprob is None


def test_logprobs_can_be_turned_off(server: FakeServer) -> None:
    (out,) = make_backend(server.url, logprobs=False).generate(rows("q"))
    assert "logprobs" not in only(server, "q").body
    assert out.output == "echo: q" and out.output_logprob is None


def test_429_with_retry_after_is_retried(server: FakeServer) -> None:
    server.script["busy"] = [
        {"status": 429, "headers": {"Retry-After": "0"}, "body": "slow down"},
        {},
    ]
    # A long backoff shows that Retry-After: 0 is honoured instead.
    backend = make_backend(server.url, backoff_s=5)

    started = time.perf_counter()
    (out,) = backend.generate(rows("busy"))

    assert out.error is None and out.output == "echo: busy"
    assert server.attempts("busy") == 2
    assert time.perf_counter() - started < 2.0


def test_server_errors_exhaust_retries_without_affecting_other_rows(server: FakeServer) -> None:
    server.script["broken"] = [{"status": 500, "body": "boom" + "z" * 500}]
    server.script["rejected"] = [{"status": 400, "body": "bad request"}]
    backend = make_backend(server.url, max_retries=2)

    outs = backend.generate(rows("ok-1", "broken", "rejected", "ok-2"))

    assert [o.output for o in outs] == ["echo: ok-1", None, None, "echo: ok-2"]
    broken, rejected = outs[1], outs[2]
    assert server.attempts("broken") == 3
    assert broken.finish_reason == FINISH_ERROR
    assert "500" in broken.error and "boom" in broken.error and "3 attempts" in broken.error
    assert len(broken.error) < 300, "the body is truncated"
    assert server.attempts("rejected") == 1, "a 400 is not retried"
    assert "400" in rejected.error and "1 attempt" in rejected.error
    assert outs[0].error is None and outs[3].error is None


def test_slow_answer_times_out_within_bounded_time(server: FakeServer) -> None:
    server.script["slow"] = [{"sleep": 1.0}]
    backend = make_backend(server.url, timeout_s=0.3, max_retries=1)

    started = time.perf_counter()
    slow, fast = backend.generate(rows("slow", "fast"))
    elapsed = time.perf_counter() - started

    assert elapsed < 5.0
    assert slow.output is None and "timeout" in slow.error.lower()
    assert "2 attempts" in slow.error
    assert server.attempts("slow") == 2
    assert slow.latency_ms >= 2 * 300
    assert fast.output == "echo: fast"


def test_malformed_200_is_a_row_error(server: FakeServer) -> None:
    server.script["garbage"] = [{"body": b"not json {"}]
    server.script["empty"] = [{"body": {"choices": []}}]
    backend = make_backend(server.url)

    garbage, empty, fine = backend.generate(rows("garbage", "empty", "fine"))

    for out in (garbage, empty):
        assert out.output is None and out.finish_reason == FINISH_ERROR
        assert "malformed response" in out.error
    assert server.attempts("garbage") == 1
    assert fine.output == "echo: fine"


def test_api_key_is_sent_and_never_leaked(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)

    def echo_key(received: Received) -> str:
        return f"invalid api key: {received.headers['authorization']}"

    def key_at_boundary(received: Received) -> str:
        # Truncating to 200 characters before scrubbing would keep "sk-test-".
        return "x" * 185 + received.headers["authorization"]

    server.script["denied"] = [{"status": 401, "body": echo_key}]
    server.script["edge"] = [{"status": 500, "body": key_at_boundary}]
    backend = make_backend(server.url, api_key_env=KEY_ENV, max_retries=1)

    ok, denied, edge = backend.generate(rows("ok", "denied", "edge"))

    assert ok.output == "echo: ok"
    assert only(server, "ok").headers["authorization"] == f"Bearer {KEY}"
    assert "401" in denied.error and "invalid api key" in denied.error
    assert "500" in edge.error and server.attempts("edge") == 2
    for text in (denied.error, edge.error, repr(backend), repr(vars(backend)), caplog.text):
        assert KEY not in text
        assert "sk-test" not in text
    assert KEY_ENV in repr(backend)


def test_unset_api_key_env_raises_naming_the_variable(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)

    with pytest.raises(ValueError, match=KEY_ENV):
        make_backend(server.url, api_key_env=KEY_ENV)


def test_concurrency_is_bounded(server: FakeServer) -> None:
    server.default = {"sleep": 0.1}
    backend = make_backend(server.url, max_concurrency=2)
    texts = [f"row {i}" for i in range(6)]

    outs = backend.generate(rows(*texts))

    assert [o.output for o in outs] == [f"echo: {t}" for t in texts]
    assert len(server.requests) == 6
    assert server.max_in_flight <= 2
    assert server.max_in_flight == 2, "two requests should overlap"


def test_connection_refused_is_retried_then_reported(no_proxy: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}/v1", max_retries=1)

    (out,) = backend.generate(rows("nobody home"))

    assert out.output is None and "connection error" in out.error
    assert "2 attempts" in out.error


@pytest.mark.parametrize(
    "options",
    [
        {"api": "embeddings"},
        {"max_concurrency": 0},
        {"timeout_s": 0},
        {"base_url": "file:///x"},
        {"logprobs": "yes"},
    ],
)
def test_invalid_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_backend("http://127.0.0.1:9/v1", **options)


def test_empty_batch_sends_nothing(server: FakeServer) -> None:
    assert make_backend(server.url).generate([]) == []
    assert server.requests == []


def test_an_output_cut_inside_a_character_is_stored_as_valid_unicode(server: FakeServer) -> None:
    """An endpoint may answer with half a surrogate pair (``"\\ud83d"``, valid JSON): the
    output keeps its text with U+FFFD in place of the half character, so Arrow (and so
    Delta, MLflow and the dashboard) can store it."""
    import pyarrow as pa

    cut = b'{"choices": [{"message": {"content": "a smile \\ud83d"}, "finish_reason": "length"}]}'
    server.script["smile"] = [{"body": cut}]
    (out,) = make_backend(server.url).generate(rows("smile"))
    assert out.error is None and out.output == "a smile \ufffd"
    assert pa.array([out.output]).to_pylist() == ["a smile \ufffd"]
