"""Delta maintenance: every table compacted, vacuumed and checkpointed, weekly
(``core`` of it in ``delta/maintenance.py``)."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from llm_eval_pipeline.core.schema import TABLES
from llm_eval_pipeline.defs.metadata import OWNERS
from llm_eval_pipeline.defs.resources import DeltaStoreResource
from llm_eval_pipeline.delta.maintenance import maintain_table

MAINTENANCE_KEY = "delta_maintenance"


@asset(
    key=MAINTENANCE_KEY,
    group_name="maintenance",
    owners=OWNERS,
    description="Compacts each Delta table's small files, vacuums the files no current "
    "version references once older than delta_retention_hours, and checkpoints the log; "
    "records the data files before and after.",
)
def delta_maintenance(
    context: AssetExecutionContext, delta: DeltaStoreResource
) -> MaterializeResult:
    store = delta.store()
    done = [
        report
        for spec in TABLES.values()
        if (report := maintain_table(store.path(spec), spec, delta.retention_hours))
    ]
    for report in done:
        context.log.info(
            f"{report.table}: {report.files_before} -> {report.files_after} data files "
            f"({report.compacted_removed} compacted into {report.compacted_added}, "
            f"{report.vacuumed} vacuumed); version {report.version}"
        )
    return MaterializeResult(
        metadata={
            "tables": len(done),
            "files_before": sum(r.files_before for r in done),
            "files_after": sum(r.files_after for r in done),
            "vacuumed": sum(r.vacuumed for r in done),
            "retention_hours": delta.retention_hours,
            "per_table": MetadataValue.json({r.table: r.summary() for r in done}),
        }
    )
