"""A PostgreSQL server of the test's own (initdb in a temporary folder, a free port on
127.0.0.1, trust authentication), which a fault test may stop and start again without
touching the server the other tests share. Run as the ``postgres`` user when the tests
run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from llm_eval_pipeline_tests.processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OWNER = "postgres"


def available() -> bool:
    """Whether this machine has the PostgreSQL 15 server binaries."""
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


class PrivateServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="llm_eval_pg_"))
        self.data, self.port = self.folder / "data", free_port()
        self.url = f"postgresql://llm_eval@127.0.0.1:{self.port}/llm_eval"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", OWNER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stdout}{done.stderr}")

    def __enter__(self) -> PrivateServer:
        if os.geteuid() == 0:
            shutil.chown(self.folder, OWNER, OWNER)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "llm_eval", "-A", "trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        self.start()
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "llm_eval", "llm_eval")  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        """Stop at once, as a crash or a lost host would: open connections are cut."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
