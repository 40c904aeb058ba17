"""Helpers for the tests that run `llm-eval` and servers in processes of their own: a
small dataset, the environment of a home, starting and finishing `llm-eval`, loopback
ports, and what a stopped server left running."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from llm_eval_pipeline_tests.conftest import write_jsonl
from llm_eval_pipeline_tests.openai_server import PROXY_VARS

REPO = Path(__file__).parent.parent
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo")]


def capitals_dataset(home: Path, wrong_city: str = "Springfield") -> Path:
    """``home/data/capitals.jsonl``: four questions with a right and a wrong answer."""
    rows = [
        {
            "prompt": f"What is the capital of {country}?",
            "references": [city],
            "right": f"The capital of {country} is {city}.",
            "wrong": f"The capital of {country} is {wrong_city}.",
        }
        for country, city in CAPITALS
    ]
    return write_jsonl(home / "data" / "capitals.jsonl", rows)


def environment(home: Path) -> dict[str, str]:
    """This environment for a process using ``home``; no proxy for loopback requests."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    return {**env, "LLM_EVAL_HOME": str(home), "LLM_EVAL_SPARK_UI": "false"}


def start_llm_eval(env: dict[str, str], *args: str) -> subprocess.Popen:
    """`llm-eval ARGS` in its own process group, stdout and stderr in one text pipe."""
    exe = Path(sys.executable).with_name("llm-eval")
    return subprocess.Popen(
        [str(exe), *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def llm_eval(env: dict[str, str], *args: str) -> str:
    """The output of `llm-eval ARGS`, which must succeed."""
    code, output = finish(start_llm_eval(env, *args))
    assert code == 0, output
    return output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def processes_naming(folder: Path, wait_s: float = 10.0) -> list[str]:
    """The processes whose command line names ``folder`` (pid and command), after up to
    ``wait_s`` for them to go: what a stopped server left running."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            if entry.name == str(os.getpid()):
                continue
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if str(folder) in command:
                found.append(f"{entry.name}: {command[:300]}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
