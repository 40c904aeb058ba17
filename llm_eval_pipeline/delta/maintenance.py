"""Keeping the Delta tables healthy: daily partitions written by several tasks collect
small files, every rewrite leaves the replaced files behind (readers of older versions
may still need them), and a write whose commit never happened leaves files no version
references. Maintenance, per table:

1. ``optimize.compact()`` (delta-rs): the small files of each partition rewritten into
   larger ones, in one commit that changes no row;
2. ``vacuum(full=True)``: files no current version references (replaced ones, and
   those of writes never committed) deleted once older than the retention;
3. a checkpoint of the log, so that readers replay fewer commits.

The retention is never below :data:`MIN_RETENTION_HOURS`: a reader holds a version's
file list for as long as it reads (a Spark job over a partition, a dashboard render),
and vacuuming a file it is about to open breaks it. See delta-rs's docs on
``DeltaTable.optimize.compact`` and ``DeltaTable.vacuum``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.schema import TableSpec

MIN_RETENTION_HOURS = 1
"""The shortest retention maintenance accepts: longer than any read of a run here."""


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one table: data files on disk and files the current
    version reads, before and after; files compaction added and removed; files vacuum
    deleted; the version after."""

    table: str
    files_before: int
    referenced_before: int
    files_after: int
    referenced_after: int
    compacted_added: int
    compacted_removed: int
    vacuumed: int
    version: int

    def summary(self) -> dict[str, int]:
        return {
            "files_before": self.files_before,
            "referenced_before": self.referenced_before,
            "files_after": self.files_after,
            "referenced_after": self.referenced_after,
            "compacted_added": self.compacted_added,
            "compacted_removed": self.compacted_removed,
            "vacuumed": self.vacuumed,
            "version": self.version,
        }


def data_files(table_path: Path) -> int:
    """Parquet files under the table's folder, referenced or not."""
    return sum(
        1
        for p in table_path.rglob("*.parquet")
        if "_delta_log" not in p.relative_to(table_path).parts
    )


def maintain_table(
    table_path: Path,
    spec: TableSpec,
    retention_hours: float,
    *,
    allow_short_retention: bool = False,
) -> TableMaintenance | None:
    """Compact, vacuum and checkpoint one table; None when it does not exist.
    ``allow_short_retention`` lifts the floor (tests, which have no concurrent reader)."""
    from deltalake import DeltaTable

    if retention_hours < MIN_RETENTION_HOURS and not allow_short_retention:
        raise UserError(
            f"{spec.name}: a retention of {retention_hours} h is below the "
            f"{MIN_RETENTION_HOURS} h running readers need (delta_retention_hours)"
        )
    if not (table_path / "_delta_log").is_dir():
        return None
    table = DeltaTable(str(table_path))
    files_before, referenced_before = data_files(table_path), len(table.file_uris())
    compacted = table.optimize.compact()
    table = DeltaTable(str(table_path))
    vacuumed = table.vacuum(
        retention_hours=int(retention_hours),
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
    )
    table = DeltaTable(str(table_path))
    table.create_checkpoint()
    return TableMaintenance(
        table=spec.name,
        files_before=files_before,
        referenced_before=referenced_before,
        files_after=data_files(table_path),
        referenced_after=len(table.file_uris()),
        compacted_added=int(compacted.get("numFilesAdded", 0)),
        compacted_removed=int(compacted.get("numFilesRemoved", 0)),
        vacuumed=len(vacuumed),
        version=table.version(),
    )
