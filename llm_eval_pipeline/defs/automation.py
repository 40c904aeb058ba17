"""Automation conditions: how day×model assets follow the daily ingestion."""

from dagster import AutomationCondition

# A day×model partition runs once its day's upstream partition is updated (so the daily
# ingest schedule drives every registered model). Unlike eager(), a newly added model
# partition alone does not trigger a run: the new-model sensor backfills it instead.
after_upstream_updates = (
    AutomationCondition.in_latest_time_window()
    & AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after_upstream_updates")

# An unpartitioned asset over all day×model partitions (the dashboard) refreshes after any
# of them is updated, once none is still running.
after_any_upstream_update = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after_any_upstream_update")
