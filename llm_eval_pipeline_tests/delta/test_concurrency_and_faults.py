"""Concurrent writers and write faults against real delta-rs tables, each writer its own
process (``writer.py``): partitions written at once all commit and keep their rows; a
write that fills the disk or lacks permission fails clearly and commits nothing."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from llm_eval_pipeline.core.schema import GENERATIONS, Col
from llm_eval_pipeline.delta.store import DeltaStore, committed_partition
from llm_eval_pipeline_tests.delta.writer import DAY, generations

REPO = Path(__file__).parents[2]


def start_writer(root: Path, model: str, rounds: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "llm_eval_pipeline_tests.delta.writer", str(root), model]
    return subprocess.Popen(
        [*command, str(rounds), *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, dict]:
    out, err = process.communicate(timeout=300)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"the writer printed no result:\n{out}\n{err}"
    return process.returncode, json.loads(lines[-1])


def partition_rows(root: Path, model: str) -> list[dict]:
    table = DeltaTable(str(root / GENERATIONS.name))
    rows = pa.table(table.to_pyarrow_table(filters=[(Col.MODEL_ID, "=", model)])).to_pylist()
    return sorted(rows, key=lambda r: r[Col.EXAMPLE_ID])


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A store root every user may read (the permission test writes as another user)."""
    folder = Path(tempfile.mkdtemp(prefix="llm_eval_delta_"))
    folder.chmod(0o755)
    yield folder / "delta"
    shutil.rmtree(folder)


def test_writers_in_three_processes_all_commit_and_lose_no_rows(shared_root: Path) -> None:
    rounds, start_at = 10, time.time() + 4
    # a and b write their own partitions; a second writer of a races the first for the
    # same partition; all three also race to create the table.
    writers = [
        start_writer(shared_root, model, rounds, "--start-at", str(start_at))
        for model in ("a", "b", "a")
    ]
    results = [finish(w) for w in writers]
    for code, result in results:
        assert code == 0 and result["error"] is None, result
        assert len(result["versions"]) == rounds

    table = DeltaTable(str(shared_root / GENERATIONS.name))
    writes = [c for c in table.history() if c["operation"] == "WRITE"]
    assert len(writes) == 3 * rounds  # every write of every process is a commit
    predicates = {committed_partition(c) or "" for c in writes}
    assert any("'a'" in p for p in predicates) and any("'b'" in p for p in predicates)
    assert table.version() == 3 * rounds  # version 0 creates the table, empty
    for model in ("a", "b"):
        rows = partition_rows(shared_root, model)
        assert len(rows) == 50  # replaced, never doubled
        assert {r[Col.OUTPUT].rsplit(" round ", 1)[1] for r in rows} == {str(rounds - 1)}


def test_two_writers_of_one_partition_of_a_new_table_never_double_it(tmp_path: Path) -> None:
    """Both writers find no table; before the table was created once, under a lock, each
    could commit its rows as a blind add (12 of 15 such races doubled the partition)."""
    for trial in range(5):
        root, start_at = tmp_path / f"trial{trial}", time.time() + 3
        writers = [start_writer(root, "a", 1, "--start-at", str(start_at)) for _ in range(2)]
        for code, result in (finish(w) for w in writers):
            assert code == 0 and result["error"] is None, result
        assert len(partition_rows(root, "a")) == 50, f"trial {trial}: the partition doubled"


def fault_setup(root: Path) -> tuple[DeltaStore, int, list[dict], list[dict]]:
    store = DeltaStore(root)
    for model in ("a", "b"):
        partition = {Col.EVAL_DATE: DAY, Col.MODEL_ID: model}
        store.write_partition(GENERATIONS, generations(model, 50, tag="before"), partition)
    version = store.version(GENERATIONS)
    assert version is not None
    return store, version, partition_rows(root, "a"), partition_rows(root, "b")


@pytest.mark.parametrize(
    ("fault", "cause"),
    [("file-size", "File too large"), ("read-only", "Permission denied")],
)
def test_a_failed_write_names_the_cause_and_commits_nothing(
    shared_root: Path, fault: str, cause: str
) -> None:
    store, version, before_a, before_b = fault_setup(shared_root)

    code, result = finish(start_writer(shared_root, "a", 1, "--rows", "20000", "--fault", fault))

    assert code == 3, result
    message = result["error"]
    assert message.startswith(f"{GENERATIONS.name}: cannot write ")
    assert "model_id = 'a'" in message and cause in message
    assert f"still at version {version}" in message
    assert store.version(GENERATIONS) == version
    assert partition_rows(shared_root, "a") == before_a  # the previous partition, whole
    assert partition_rows(shared_root, "b") == before_b
    table = DeltaTable(str(shared_root / GENERATIONS.name))
    assert all(Path(uri.removeprefix("file://")).is_file() for uri in table.file_uris())

    # Once the fault is gone the same write goes through.
    for folder in [shared_root, *(p for p in shared_root.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    code, result = finish(start_writer(shared_root, "a", 1, "--rows", "20000"))
    assert code == 0, result
    assert len(partition_rows(shared_root, "a")) == 20000
    assert partition_rows(shared_root, "b") == before_b
