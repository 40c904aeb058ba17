"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for the backend and judge tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@dataclass
class Received:
    """One request as the server saw it (header names lower-cased)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        if "messages" in self.body:
            return self.body["messages"][0]["content"]
        return self.body["prompt"]


# A step says how to answer one attempt: status (default 200), body (bytes, a JSON-able
# value, a callable taking the Received request, or absent for an echo answer), headers,
# and sleep (seconds before answering). A prompt's steps are used in order, the last repeats.
Step = dict[str, Any]


@dataclass
class FakeServer:
    url: str = ""
    script: dict[str, list[Step]] = field(default_factory=dict)
    default: Step = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempts(self, prompt: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.prompt == prompt)

    def enter(self, received: Received) -> Step:
        with self.lock:
            seen = sum(1 for r in self.requests if r.prompt == received.prompt)
            self.requests.append(received)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            steps = self.script.get(received.prompt) or [self.default]
            return steps[min(seen, len(steps) - 1)]

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def echo_answer(received: Received) -> dict[str, Any]:
    text = f"echo: {received.prompt}"
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if received.path.endswith("/chat/completions"):
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    if "logprobs" in received.body:  # as real servers do: one entry per output token
        tokens = [("echo", -0.5), (":", -1.0)]
        if received.path.endswith("/chat/completions"):
            choice["logprobs"] = {"content": [{"token": t, "logprob": p} for t, p in tokens]}
        else:
            choice["logprobs"] = {
                "tokens": [t for t, _ in tokens],
                "token_logprobs": [p for _, p in tokens],
            }
    usage = {"prompt_tokens": len(received.prompt), "completion_tokens": 2, "total_tokens": 0}
    return {"choices": [choice], "usage": usage}


def make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received = Received(self.path, headers, body)
            step = server.enter(received)
            try:
                time.sleep(step.get("sleep", 0))
                payload: Any = step.get("body")
                if payload is None:
                    payload = echo_answer(received)
                elif callable(payload):
                    payload = payload(received)
                if not isinstance(payload, bytes):
                    payload = (
                        payload.encode()
                        if isinstance(payload, str)
                        else json.dumps(payload).encode()
                    )
            finally:
                # done before the answer leaves, so the client's next request, sent once
                # it has this answer, is never counted as overlapping this one
                server.leave()
            try:
                self.send_response(step.get("status", 200))
                for name, value in step.get("headers", {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests must not be sent to a proxy from the environment."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@contextmanager
def serve(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """Run ``fake`` on a free loopback port (no proxy in between) until the block ends."""
    clear_proxies(monkeypatch)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    host, port = httpd.server_address[:2]
    fake.url = f"http://{host}:{port}/v1"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
