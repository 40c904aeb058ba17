"""A separate process that writes ``generations`` partitions with the real DeltaStore, for
the concurrency and write-fault tests: ``python -m llm_eval_pipeline_tests.delta.writer
ROOT MODEL ROUNDS [--start-at T] [--fault file-size|read-only]``.

It prints one JSON line: the versions it committed, or the error it got.
"""

import argparse
import datetime as dt
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import pyarrow as pa

from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.delta.store import DeltaStore, DeltaStoreError

DAY = dt.date(2026, 11, 1)
FILE_SIZE_LIMIT = 64 * 1024
NOBODY = 65534


def generations(model: str, rows: int, tag: str = "", day: dt.date = DAY) -> pa.Table:
    """``rows`` generations of ``model`` on ``day``; ``tag`` marks which write made them."""
    return pa.Table.from_pylist(
        [
            {
                Col.EXAMPLE_ID: f"ex{i}",
                Col.OUTPUT: f"{model} answer {i} {tag}".strip(),
                Col.PROMPT_TOKENS: 5,
                Col.OUTPUT_TOKENS: 3,
                Col.LATENCY_MS: 1.0,
                Col.FINISH_REASON: "stop",
                Col.ERROR: None,
                Col.OUTPUT_LOGPROB: None,
                Col.OUTPUT_LOGPROB_TOKENS: None,
                Col.GENERATION_CONFIG_HASH: "h",
                Col.EVAL_DATE: day,
                Col.MODEL_ID: model,
            }
            for i in range(rows)
        ],
        schema=GENERATIONS.schema,
    )


def incompressible(model: str, rows: int) -> pa.Table:
    """A partition whose Parquet file is megabytes: random outputs do not compress."""
    table = generations(model, rows)
    outputs = pa.array([os.urandom(32).hex() for _ in range(rows)])
    return table.set_column(table.schema.get_field_index(Col.OUTPUT), Col.OUTPUT, outputs)


def impose(fault: str | None, table: Path) -> None:
    if fault == "file-size":
        # Writes past the limit fail with EFBIG, as they would with ENOSPC on a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    elif fault == "read-only" and os.geteuid() == 0:
        # root writes anywhere; an ordinary user cannot write into root's 0755 folders.
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    elif fault == "read-only":
        for folder in [table, *(p for p in table.rglob("*") if p.is_dir())]:
            folder.chmod(0o555)  # the test gives write access back afterwards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("model")
    parser.add_argument("rounds", type=int)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    parser.add_argument("--fault", choices=["file-size", "read-only"])
    args = parser.parse_args(argv)
    store = DeltaStore(args.root)
    partition = {Col.EVAL_DATE: DAY, Col.MODEL_ID: args.model}
    tables = [
        incompressible(args.model, args.rows)
        if args.fault == "file-size"
        else generations(args.model, args.rows, tag=f"round {r}")
        for r in range(args.rounds)
    ]
    store.version(GENERATIONS)  # loads delta-rs before a fault may take file access away
    impose(args.fault, store.path(GENERATIONS))
    time.sleep(max(0.0, args.start_at - time.time()))
    versions = []
    try:
        for table in tables:
            versions.append(store.write_partition(GENERATIONS, table, partition))
    except DeltaStoreError as exc:
        print(json.dumps({"versions": versions, "error": str(exc)}))
        return 3
    print(json.dumps({"versions": versions, "error": None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
