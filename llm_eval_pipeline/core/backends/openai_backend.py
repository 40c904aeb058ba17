"""Generation over HTTP against any OpenAI-compatible server (vLLM, TGI, Ollama, OpenAI).

Each row is one request. With ``api: chat`` (the default) the backend sends
``POST {base_url}/chat/completions`` with the row's text as the single user message and reads
``choices[0].message.content``; with ``api: completions`` it sends
``POST {base_url}/completions`` with the text as ``prompt`` and reads ``choices[0].text``.
The request carries the spec's generation parameters (``max_tokens``, ``temperature``,
``top_p``, ``seed`` and, when set, ``stop``); token counts come from ``usage``. It also asks
for the output tokens' log-probabilities (``"logprobs": true`` for chat, ``"logprobs": 0``
for completions, which returns the chosen tokens' only) unless the spec sets
``logprobs: false``; their sum becomes ``output_logprob``, from which the metrics compute
``output_perplexity`` with the evaluated model itself. An answer without them leaves it
null.

Options (``spec.options``): ``base_url`` and ``model`` (required), ``api``, ``api_key_env``
(the *name* of an environment variable holding the key, sent as ``Authorization: Bearer``),
``max_concurrency`` (requests in flight at once, default 4), ``timeout_s`` (per request,
default 30), ``max_retries`` (retries after the first attempt, default 3) and ``backoff_s``
(default 0.5, doubled per retry, at most 30 s; a numeric ``Retry-After`` is honoured instead).

HTTP 429, 5xx, timeouts and connection errors are retried; other 4xx and malformed answers
are not. A row that still fails gets an error output while the rest of its batch goes on.
The key never appears in error messages, logs or the backend's repr. Only the standard
library is used; redirects are not followed, so the key is never sent to another host.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llm_eval_pipeline.core.backends.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationInput,
    GenerationOutput,
)
from llm_eval_pipeline.core.models import ModelSpec

log = logging.getLogger(__name__)

API_PATHS = {"chat": "/chat/completions", "completions": "/completions"}
MAX_BACKOFF_S = 30.0
MAX_BODY_CHARS = 200
MAX_ERROR_BODY_BYTES = 65536
REDACTED = "***"


class _Secret:
    """Holds the API key so that neither repr() nor vars() of the backend shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"<secret {REDACTED}>"

    __str__ = __repr__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turns a redirect into an HTTP error instead of resending the key elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


@dataclass(frozen=True)
class _Outcome:
    """One attempt: either a parsed answer or an error (retryable or not)."""

    output: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = FINISH_STOP
    logprobs: list[float] | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None


class OpenAIBackend:
    """Backend for an OpenAI-compatible endpoint; ``device`` is always ``"remote"``."""

    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        # ``device`` is part of the common constructor; the model runs on the server.
        del device
        self.device = "remote"
        self.spec = spec
        where = f"model {spec.name!r}"
        options: Mapping[str, Any] = spec.options
        if spec.backend != "openai":
            raise ValueError(f"{where}: backend is {spec.backend!r}, not 'openai'")
        for key in ("base_url", "model"):
            if not isinstance(options.get(key), str) or not options[key].strip():
                raise ValueError(f"{where}: the openai backend needs option {key}")
        self.base_url = options["base_url"].strip().rstrip("/")
        if not self.base_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"{where}: base_url must start with http:// or https://")
        self.model: str = options["model"]
        self.api = options.get("api") or "chat"
        if self.api not in API_PATHS:
            raise ValueError(f"{where}: api must be one of {sorted(API_PATHS)}, not {self.api!r}")
        self.url = self.base_url + API_PATHS[self.api]
        self.max_concurrency = int(_number(options, "max_concurrency", 4, 1, where, whole=True))
        self.timeout_s = _number(options, "timeout_s", 30.0, 0.0, where, exclusive=True)
        self.max_retries = int(_number(options, "max_retries", 3, 0, where, whole=True))
        self.backoff_s = _number(options, "backoff_s", 0.5, 0.0, where)
        self.logprobs = options.get("logprobs", True)
        if not isinstance(self.logprobs, bool):
            raise ValueError(f"{where}: logprobs must be true or false")
        self.api_key_env: str | None = options.get("api_key_env") or None
        self._key = _read_key(self.api_key_env, where)
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(name={self.spec.name!r}, model={self.model!r}, url={self.url!r}, "
            f"api_key_env={self.api_key_env!r}, key={'set' if self._key else 'none'})"
        )

    # ------------------------------------------------------------------ generation

    def generate(self, batch: Sequence[GenerationInput]) -> list[GenerationOutput]:
        """One output per input, in input order, at most ``max_concurrency`` in flight."""
        items = list(batch)
        if not items:
            return []
        workers = min(self.max_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-backend") as pool:
            return list(pool.map(self._generate_row, items))

    def _generate_row(self, item: GenerationInput) -> GenerationOutput:
        start = time.perf_counter()
        try:
            return self._generate_with_retries(item, start)
        except Exception as exc:  # a row's failure must not take down its batch
            return GenerationOutput.failed(
                self._scrub(f"unexpected error: {type(exc).__name__}: {exc}")[:300],
                _elapsed_ms(start),
            )

    def _generate_with_retries(self, item: GenerationInput, start: float) -> GenerationOutput:
        payload = json.dumps(self._body(item.text)).encode("utf-8")
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            outcome = self._attempt(payload)
            if outcome.error is None:
                logprobs = outcome.logprobs
                return GenerationOutput(
                    outcome.output,
                    outcome.prompt_tokens,
                    outcome.output_tokens,
                    _elapsed_ms(start),
                    outcome.finish_reason,
                    output_logprob=math.fsum(logprobs) if logprobs else None,
                    output_logprob_tokens=len(logprobs) if logprobs else None,
                )
            done = attempt + 1
            error = self._scrub(outcome.error)
            if not outcome.retryable or done == attempts:
                plural = "" if done == 1 else "s"
                return GenerationOutput.failed(
                    f"{error} (after {done} attempt{plural})", _elapsed_ms(start)
                )
            delay = self._delay(attempt, outcome.retry_after)
            log.debug(
                "%s row %s: attempt %d/%d failed (%s); retrying in %.2f s",
                self.spec.name,
                item.example_id,
                done,
                attempts,
                error,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _body(self, text: str) -> dict[str, Any]:
        generation = self.spec.generation
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": generation.max_new_tokens,
            "temperature": generation.temperature,
            "top_p": generation.top_p,
            "seed": generation.seed,
        }
        if generation.stop:
            body["stop"] = list(generation.stop)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        if self.logprobs:
            body["logprobs"] = True if self.api == "chat" else 0
        return body

    def _attempt(self, payload: bytes) -> _Outcome:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            return self._http_error(exc)
        except TimeoutError:
            return self._timeout()
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return self._timeout()
            return _Outcome(error=f"connection error: {exc.reason}", retryable=True)
        except (OSError, http.client.HTTPException) as exc:
            return _Outcome(error=f"connection error: {type(exc).__name__}: {exc}", retryable=True)
        return self._parse(raw)

    def _timeout(self) -> _Outcome:
        return _Outcome(error=f"timeout: no answer within {self.timeout_s:g} s", retryable=True)

    def _http_error(self, exc: urllib.error.HTTPError) -> _Outcome:
        status = exc.code
        try:
            raw = exc.read(MAX_ERROR_BODY_BYTES)
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            exc.close()
        retryable = status == 429 or 500 <= status <= 599
        retry_after = _retry_after(exc.headers) if retryable else None
        # Scrub before truncating, so that a key cut at the boundary cannot leak in part.
        text = self._scrub(raw.decode("utf-8", errors="replace"))[:MAX_BODY_CHARS]
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        return _Outcome(
            error=f"HTTP {status}: {text}", retryable=retryable, retry_after=retry_after
        )

    def _parse(self, raw: bytes) -> _Outcome:
        field = "choices[0].message.content" if self.api == "chat" else "choices[0].text"
        try:
            data = json.loads(raw)
        except ValueError:
            return _Outcome(error="malformed response: body is not JSON")
        try:
            choice = data["choices"][0]
            output = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            return _Outcome(error=f"malformed response: no {field}")
        if output is None:
            output = ""
        if not isinstance(output, str):
            return _Outcome(error=f"malformed response: {field} is not text")
        usage = data.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        finish = FINISH_LENGTH if choice.get("finish_reason") == "length" else FINISH_STOP
        return _Outcome(
            output=output,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
            finish_reason=finish,
            logprobs=_token_logprobs(choice.get("logprobs"), self.api),
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.backoff_s * 2.0 ** min(attempt, 32), MAX_BACKOFF_S)

    def _scrub(self, text: str) -> str:
        if self._key is None:
            return text
        key = self._key.reveal()
        for form in {key, json.dumps(key)[1:-1]}:
            text = text.replace(form, REDACTED)
        return text


# ---------------------------------------------------------------------- helpers


def _read_key(env_name: str | None, where: str) -> _Secret | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ValueError(
            f"{where}: environment variable {env_name} (api_key_env) is unset or empty"
        )
    if not all(33 <= ord(c) < 127 for c in value):
        raise ValueError(
            f"{where}: the key in environment variable {env_name} has characters not allowed "
            "in an HTTP header"
        )
    return _Secret(value)


def _number(
    options: Mapping[str, Any],
    key: str,
    default: float,
    minimum: float,
    where: str,
    *,
    whole: bool = False,
    exclusive: bool = False,
) -> float:
    value = options.get(key)
    if value is None:
        return float(default)
    bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
    kind = "a whole number" if whole else "a number"
    problem = ValueError(f"{where}: option {key} must be {kind} {bound}, not {value!r}")
    if isinstance(value, bool):
        raise problem
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise problem from None
    if (
        not math.isfinite(number)
        or (whole and not number.is_integer())
        or number < minimum
        or (exclusive and number == minimum)
    ):
        raise problem
    return number


def _token_logprobs(value: Any, api: str) -> list[float] | None:
    """The chosen tokens' log-probabilities from a choice's ``logprobs``: chat gives
    ``{"content": [{"token", "logprob"}, ...]}``, completions ``{"token_logprobs": [...]}``.
    None when absent or when any entry is not a finite number <= 0."""
    if not isinstance(value, dict):
        return None
    if api == "chat":
        content = value.get("content")
        items = [e.get("logprob") if isinstance(e, dict) else None for e in content or []]
    else:
        items = value.get("token_logprobs") or []
    if not items or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v <= 0
        for v in items
    ):
        return None
    return [float(v) for v in items]


def _retry_after(headers: Any) -> float | None:
    """Seconds from a numeric Retry-After header, capped; None for absent or a date."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_BACKOFF_S)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
