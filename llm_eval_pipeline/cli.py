"""``llm-eval``: run the pipeline from a terminal, in the Dagster instance ``make ui`` opens.

llm-eval demo [--days N]
llm-eval run [--dataset PATH] [--name NAME] [--start YYYY-MM-DD] [--end YYYY-MM-DD]
             [--models a,b]
llm-eval ui [--port 3000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from llm_eval_pipeline.core.models import ModelSpecError, validate_model_name
from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, QUARANTINED_EXAMPLES, Col, TableSpec
from llm_eval_pipeline.settings import Settings, SettingsError, get_settings

DEMO_DATASET_NAME = "demo_eval"
# Dagster's step events go to the run's event log (the UI); the terminal gets INFO and up.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_TABLES: tuple[TableSpec, ...] = (EVAL_EXAMPLES, QUARANTINED_EXAMPLES)


class CliError(Exception):
    """A problem to report in one line, with exit status 1."""


@dataclass(frozen=True)
class RunRequest:
    days: list[dt.date]
    models: list[str]


def demo_dataset_path() -> str:
    return str(resources.files("llm_eval_pipeline.demo") / "data" / f"{DEMO_DATASET_NAME}.jsonl")


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def date_range(start: dt.date, end: dt.date, settings: Settings) -> list[dt.date]:
    today = today_utc()
    if start > end:
        raise CliError(f"--start {start} is after --end {end}")
    if start < settings.start_date:
        raise CliError(
            f"--start {start} is before the first partition {settings.start_date} "
            "(start_date in config.yaml or LLM_EVAL_START_DATE)"
        )
    if end > today:
        raise CliError(f"--end {end} is after today ({today}, UTC)")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def prepare_dagster_home(settings: Settings) -> Path:
    """The Dagster instance folder inside LLM_EVAL_HOME, shared by the CLI and the UI."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = settings.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return settings.dagster_home


def start_ui(settings: Settings, port: int) -> int:
    """Replace this process with ``dagster dev`` bound to 127.0.0.1."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
        "LLM_EVAL_HOME": str(settings.home),
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    target = (
        ["-w", "workspace.yaml"]
        if Path("workspace.yaml").exists()
        else ["-m", "llm_eval_pipeline.definitions"]
    )
    print(f"Dagster UI on http://127.0.0.1:{port} (instance: {env['DAGSTER_HOME']})")
    os.execve(dagster, [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), *target], env)
    return 0  # not reached


def run_pipeline(settings: Settings, request: RunRequest) -> int:
    """Materialize the pipeline for each requested day; print what was written."""
    from dagster import DagsterInstance

    from llm_eval_pipeline.definitions import build_definitions
    from llm_eval_pipeline.defs.jobs import INGEST_JOB
    from llm_eval_pipeline.defs.partitions import MODELS_PARTITION

    instance = DagsterInstance.from_config(str(prepare_dagster_home(settings)))
    if request.models:
        instance.add_dynamic_partitions(MODELS_PARTITION, request.models)
        print(f"Registered model partitions: {', '.join(request.models)}")

    job = build_definitions(settings).resolve_job_def(INGEST_JOB)
    failed = []
    for day in request.days:
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            raise_on_error=False,
            run_config=QUIET_LOGS,
        )
        status = "ok" if result.success else "FAILED"
        print(f"{day}: {INGEST_JOB} run {result.run_id} {status}")
        if not result.success:
            failed.append(day)
            for event in result.get_step_failure_events():
                error = event.step_failure_data.error
                user = event.step_failure_data.user_failure_data
                message = user.description if user and user.description else error.message
                print(f"  {event.step_key}: {message.strip()}", file=sys.stderr)
    print_summary(settings, request.days)
    return 1 if failed else 0


def print_summary(settings: Settings, days: Sequence[dt.date]) -> None:
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    print(f"\nDelta tables under {settings.delta_dir}:")
    for spec in SUMMARY_TABLES:
        version = store.version(spec)
        if version is None:
            print(f"  {spec.name:<22} (not written)")
            continue
        table = store.read_arrow(spec)
        counts = table.group_by(Col.EVAL_DATE).aggregate([([], "count_all")]).to_pylist()
        per_day = {row[Col.EVAL_DATE]: row["count_all"] for row in counts}
        shown = ", ".join(f"{day}: {per_day.get(day, 0)}" for day in days)
        print(f"  {spec.name:<22} version {version:<4} rows {shown}")
        print(f"  {'':<22} {store.path(spec)}")


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from exc


def _parse_models(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        return [validate_model_name(n) for n in names]
    except ModelSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-eval", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the pipeline on the shipped demo dataset")
    demo.add_argument("--days", type=int, default=3, help="how many days up to today (3)")

    run = commands.add_parser("run", help="run the pipeline on a dataset for a range of days")
    run.add_argument("--dataset", help="dataset file or Delta table (else config.yaml)")
    run.add_argument("--name", help="dataset name (default: the file's stem)")
    run.add_argument("--start", type=_parse_date, help="first day, YYYY-MM-DD (default: --end)")
    run.add_argument("--end", type=_parse_date, help="last day, YYYY-MM-DD (default: today)")
    run.add_argument("--models", type=_parse_models, default=[], help="model names, a,b")

    ui = commands.add_parser("ui", help="start the Dagster UI (dagster dev) on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        if args.command == "ui":
            return start_ui(settings, args.port)
        if args.command == "demo":
            if args.days < 1:
                raise CliError("--days must be at least 1")
            end = today_utc()
            start = end - dt.timedelta(days=args.days - 1)
            settings = settings.with_dataset(demo_dataset_path(), DEMO_DATASET_NAME)
            request = RunRequest(days=date_range(start, end, settings), models=[])
        else:
            if args.dataset:
                settings = settings.with_dataset(args.dataset, args.name)
            end = args.end or today_utc()
            request = RunRequest(
                days=date_range(args.start or end, end, settings), models=args.models
            )
        return run_pipeline(settings, request)
    except (CliError, SettingsError) as exc:
        print(f"llm-eval: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
