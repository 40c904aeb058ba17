"""``llm-eval``: run the pipeline from a terminal, in the Dagster instance ``make ui`` opens.

llm-eval demo [--days N]
llm-eval demo-models [--force]
llm-eval models add NAME --backend B [options] | list | remove NAME
llm-eval score INPUT --output OUT [--metrics GROUPS] [--model NAME_OR_PATH]

llm-eval demo [--days N]
llm-eval run [--dataset PATH] [--name NAME] [--start YYYY-MM-DD] [--end YYYY-MM-DD]
             [--models a,b]
llm-eval status [--days N]
llm-eval ui [--port 3000] [--mlflow-port 5000]

Every command's exit status is its result: 0 done, 1 a problem it reported, 2 bad
arguments (see :func:`entry`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pyarrow as pa
import yaml

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.leaderboard import Leaderboard
from llm_eval_pipeline.core.models import (
    BACKENDS,
    ModelRegistry,
    ModelSpecError,
    parse_spec,
    validate_model_name,
)
from llm_eval_pipeline.core.schema import (
    EVAL_EXAMPLES,
    EXAMPLE_METRICS,
    GENERATIONS,
    HEADLINE_METRICS,
    METRIC_AGGREGATES,
    QUARANTINED_EXAMPLES,
    Col,
    TableSpec,
)
from llm_eval_pipeline.file_lock import exclusive
from llm_eval_pipeline.settings import Settings, get_settings

DEMO_DATASET_NAME = "demo_eval"
# Each run starts its own Spark driver: two at a time suits a laptop.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
"""
# Dagster's step events go to the run's event log (the UI); the terminal gets INFO and up.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_TABLES: tuple[TableSpec, ...] = (
    EVAL_EXAMPLES,
    QUARANTINED_EXAMPLES,
    GENERATIONS,
    EXAMPLE_METRICS,
    METRIC_AGGREGATES,
)


class CliError(UserError):
    """A problem to report in one line, with exit status 1."""


DEBUG_ENV = "LLM_EVAL_DEBUG"
# Usage reports stay off: MLflow's client and server send them unless told not to
# (Dagster's are off in DAGSTER_YAML). Nothing leaves the machine.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true"}


@dataclass(frozen=True)
class RunRequest:
    days: list[dt.date]
    models: list[str]


def demo_dataset_path() -> str:
    return str(resources.files("llm_eval_pipeline.demo") / "data" / f"{DEMO_DATASET_NAME}.jsonl")


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def latest_day() -> dt.date:
    """The latest daily partition: yesterday (UTC), as a day is evaluated once it is over."""
    return today_utc() - dt.timedelta(days=1)


def date_range(start: dt.date, end: dt.date, settings: Settings) -> list[dt.date]:
    latest = latest_day()
    if start > end:
        raise CliError(f"--start {start} is after --end {end}")
    if start < settings.start_date:
        raise CliError(
            f"--start {start} is before the first partition {settings.start_date} "
            "(start_date in config.yaml or LLM_EVAL_START_DATE)"
        )
    if end > latest:
        raise CliError(f"--end {end} is after the latest complete day ({latest}, UTC)")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def prepare_dagster_home(settings: Settings) -> Path:
    """The Dagster instance folder inside LLM_EVAL_HOME, shared by the CLI and the UI."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = settings.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        # written whole or not at all: another process may be reading it already
        partial = dagster_yaml.with_name(f".dagster.yaml.{os.getpid()}")
        partial.write_text(DAGSTER_YAML, encoding="utf-8")
        os.replace(partial, dagster_yaml)
    return settings.dagster_home


def ui_commands(settings: Settings, port: int, mlflow_port: int) -> dict[str, list[str]]:
    """The two servers ``llm-eval ui`` starts, both on 127.0.0.1."""
    bin_dir = Path(sys.executable).parent
    target = (
        ["-w", "workspace.yaml"]
        if Path("workspace.yaml").exists()
        else ["-m", "llm_eval_pipeline.definitions"]
    )
    settings.mlartifacts_dir.mkdir(parents=True, exist_ok=True)
    return {
        "dagster": [str(bin_dir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), *target],
        "mlflow": [
            str(bin_dir / "mlflow"),
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--default-artifact-root",
            settings.mlartifacts_dir.as_uri(),
        ],
    }


def ui_environment(settings: Settings) -> dict[str, str]:
    """The servers' environment: this one, the home, its Dagster instance, no telemetry."""
    return {
        **os.environ,
        **NO_TELEMETRY,
        "DAGSTER_HOME": str(prepare_dagster_home(settings)),
        "LLM_EVAL_HOME": str(settings.home),
    }


def start_ui(settings: Settings, port: int, mlflow_port: int) -> int:
    """Run ``dagster dev`` and ``mlflow ui`` until Ctrl-C (or until one exits), then stop
    both. A remote ``MLFLOW_TRACKING_URI`` has its own UI, so only Dagster starts then."""
    env = ui_environment(settings)
    commands = ui_commands(settings, port, mlflow_port)
    if settings.mlflow_tracking_uri_override and not settings.mlflow_tracking_uri.startswith(
        "sqlite:"
    ):
        del commands["mlflow"]
        print(f"MLflow: {settings.mlflow_tracking_uri} (MLFLOW_TRACKING_URI)")
    else:
        print(f"MLflow UI on http://127.0.0.1:{mlflow_port} ({settings.mlflow_tracking_uri})")
    print(f"Dagster UI on http://127.0.0.1:{port} (instance: {env['DAGSTER_HOME']})")
    print("Ctrl-C stops both.")
    # Handled (not ignored, as in a background job) so that the servers start with the
    # default dispositions and stop on SIGINT; SIGTERM stops them the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    servers = {
        name: subprocess.Popen(cmd, env=env, start_new_session=True)
        for name, cmd in commands.items()
    }
    try:
        while all(p.poll() is None for p in servers.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop_servers(list(servers.values()))
    return max((p.returncode or 0) for p in servers.values())


def stop_servers(processes: list[subprocess.Popen], grace_s: float = 20.0) -> None:
    """SIGINT to each server, then SIGTERM and SIGKILL to its whole process group (a
    server's own workers included) for those still running after ``grace_s``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for stop in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, stop)


def run_pipeline(settings: Settings, request: RunRequest) -> int:
    """Materialize the pipeline for each requested day; print what was written."""
    from dagster import DagsterInstance, MultiPartitionKey

    from llm_eval_pipeline.definitions import build_definitions
    from llm_eval_pipeline.defs.jobs import DASHBOARD_JOB, GENERATION_JOB, INGEST_JOB
    from llm_eval_pipeline.defs.partitions import MODELS_PARTITION

    registered = [spec.name for spec in ModelRegistry(settings.models_yaml).load()]
    unknown = [name for name in request.models if name not in registered]
    if unknown:
        raise CliError(
            f"models {unknown} are not in {settings.models_yaml}; add them with "
            "`llm-eval models add`"
        )
    models = request.models or registered
    # Dagster creates a new sqlite instance's tables on first open; two `llm-eval run`s
    # starting at once must not both do it.
    dagster_home = prepare_dagster_home(settings)
    with exclusive(dagster_home / "instance.lock"):
        instance = DagsterInstance.from_config(str(dagster_home))
    known = set(instance.get_dynamic_partitions(MODELS_PARTITION))
    instance.add_dynamic_partitions(MODELS_PARTITION, [m for m in models if m not in known])

    defs = build_definitions(settings)
    ingest, generate = defs.resolve_job_def(INGEST_JOB), defs.resolve_job_def(GENERATION_JOB)
    failures = 0
    steps = len(request.days) * (1 + len(models)) + 1
    done = 0
    for day in request.days:
        done += 1
        if not _execute(ingest, day.isoformat(), instance, f"[{done}/{steps}] {day}"):
            failures += 1
            done += len(models)
            continue
        for model in models:
            done += 1
            key = MultiPartitionKey({Col.EVAL_DATE: day.isoformat(), Col.MODEL_ID: model})
            failures += not _execute(generate, key, instance, f"[{done}/{steps}] {day} {model}")
    if not models:
        print(f"No models registered in {settings.models_yaml}: ingestion only.")
    else:
        dashboard = defs.resolve_job_def(DASHBOARD_JOB)
        failures += not _execute(dashboard, None, instance, f"[{steps}/{steps}] dashboard")
    print_summary(settings, request.days)
    print_next_steps(settings)
    return 1 if failures else 0


def print_next_steps(settings: Settings) -> None:
    from llm_eval_pipeline.defs.assets.tracking import DASHBOARD_FILE

    dashboard = settings.dashboard_dir / DASHBOARD_FILE
    if dashboard.exists():
        print(f"\nDashboard: {dashboard.as_uri()}")
    print(f"MLflow runs: {settings.mlflow_tracking_uri}")
    print(
        "Open the UIs: `make ui` (Dagster on http://127.0.0.1:3000, MLflow on "
        "http://127.0.0.1:5000); both use this home: "
        f"LLM_EVAL_HOME={settings.home}"
    )


def _execute(job, partition_key: str | None, instance, label: str) -> bool:
    result = job.execute_in_process(
        partition_key=partition_key, instance=instance, raise_on_error=False, run_config=QUIET_LOGS
    )
    print(f"{label}: {job.name} run {result.run_id} {'ok' if result.success else 'FAILED'}")
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        user = event.step_failure_data.user_failure_data
        message = user.description if user and user.description else error.message
        print(f"  {event.step_key}: {message.strip()}", file=sys.stderr)
    return result.success


def status(settings: Settings, last_days: int) -> int:
    """``llm-eval status``: the Delta tables and the leaderboard of the latest days."""
    from llm_eval_pipeline.delta.store import DeltaStore

    store = DeltaStore(settings.delta_dir, settings.delta_engine)
    found = {
        dt.date.fromisoformat(p[Col.EVAL_DATE])
        for spec in SUMMARY_TABLES
        for p in store.partitions(spec)
    }
    print_summary(settings, sorted(found)[-last_days:])
    return 0


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
        groups = [c for c in spec.partition_by]
        counts = table.group_by(groups).aggregate([([], "count_all")]).to_pylist()
        print(f"  {spec.name:<22} version {version}  {store.path(spec)}")
        for day in days:
            parts = [r for r in counts if r[Col.EVAL_DATE] == day]
            if len(groups) == 1:
                shown = f"{parts[0]['count_all'] if parts else 0} rows"
            else:
                shown = ", ".join(f"{r[Col.MODEL_ID]}: {r['count_all']} rows" for r in parts)
            print(f"      {day}  {shown or '-'}")
    print_leaderboard(store, days)


def print_leaderboard(store, days: Sequence[dt.date]) -> None:
    """The latest day's headline metrics per model, with 95% bootstrap intervals."""
    import pyarrow.compute as pc

    if store.version(METRIC_AGGREGATES) is None:
        return
    table = store.read_arrow(METRIC_AGGREGATES)
    table = table.filter(pc.is_in(table.column(Col.EVAL_DATE), value_set=pa.array(days)))
    board = Leaderboard.of(table.to_pandas(), HEADLINE_METRICS)
    if not board.models:
        return
    print(f"\nLeaderboard for {board.day} (mean [95% CI], * best; perplexity: geometric mean):")
    print(f"  {'model':<20}" + "".join(f"{name:>30}" for name in board.metrics))
    for model in board.models:
        cells = []
        for metric in board.metrics:
            entry = board.entry(model, metric)
            text = "-"
            if entry is not None:
                ci = f" [{entry.ci_low:.3f}, {entry.ci_high:.3f}]" if entry.has_interval else ""
                text = f"{'*' if entry.best else ''}{entry.mean:.3f}{ci}"
            cells.append(text.rjust(30))
        print(f"  {model:<20}{''.join(cells)}")


def build_demo(settings: Settings, force: bool = False) -> list[str]:
    from llm_eval_pipeline.demo.models import build_demo_models

    built = build_demo_models(settings.models_dir, Path(demo_dataset_path()), force=force)
    for model in built:
        state = "built" if model.built else "already built"
        print(f"{model.name}: {state} at {model.path}")
    return [m.name for m in built]


def register_demo_models(settings: Settings) -> list[str]:
    """Build the demo models if missing and (re)register them; their names."""
    from llm_eval_pipeline.demo.models import demo_specs

    build_demo(settings)
    registry = ModelRegistry(settings.models_yaml)
    for spec in demo_specs(settings.models_dir):
        registry.add(spec, replace=True)
    return [spec.name for spec in demo_specs(settings.models_dir)]


def models_command(settings: Settings, args: argparse.Namespace) -> int:
    registry = ModelRegistry(settings.models_yaml)
    if args.models_command == "list":
        specs = registry.load()
        if not specs:
            print(f"No models in {registry.path}")
        for spec in specs:
            source = next(
                (str(spec.options[k]) for k in ("path", "model", "column") if k in spec.options), ""
            )
            flag = "  (baseline)" if spec.baseline else ""
            print(
                f"{spec.name:<20} {spec.backend:<12} {spec.generation_config_hash}  {source}{flag}"
            )
        return 0
    if args.models_command == "remove":
        registry.remove(args.name)
        print(f"Removed {args.name} from {registry.path}; its tables and partitions are kept.")
        return 0
    spec = parse_spec(spec_from_args(args), "llm-eval models add")
    registry.add(spec, replace=args.replace)
    print(
        f"Added {spec.name} ({spec.backend}) to {registry.path}. With `make ui` running, the "
        f"new-model sensor backfills it over the last {settings.backfill_days} days; "
        f"or run `llm-eval run --models {spec.name} --start YYYY-MM-DD`."
    )
    return 0


def spec_from_args(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    named = {
        "path": args.path,
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "column": args.column,
    }
    options.update({k: v for k, v in named.items() if v is not None})
    generation = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "do_sample": args.do_sample,
        "seed": args.seed,
        "stop": args.stop,
        "prompt_template": args.prompt_template,
    }
    return {
        "name": args.name,
        "backend": args.backend,
        "options": options,
        "generation": {k: v for k, v in generation.items() if v is not None},
        "baseline": args.baseline,
    }


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
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of any error (or set {DEBUG_ENV}=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the pipeline on the shipped demo dataset")
    demo.add_argument("--days", type=int, default=3, help="how many days up to today (3)")

    run = commands.add_parser("run", help="run the pipeline on a dataset for a range of days")
    run.add_argument("--dataset", help="dataset file or Delta table (else config.yaml)")
    run.add_argument("--name", help="dataset name (default: the file's stem)")
    run.add_argument("--start", type=_parse_date, help="first day, YYYY-MM-DD (default: --end)")
    run.add_argument(
        "--end", type=_parse_date, help="last day, YYYY-MM-DD (default: yesterday, UTC)"
    )
    run.add_argument("--models", type=_parse_models, default=[], help="model names, a,b")

    demo_models = commands.add_parser("demo-models", help="build the two tiny demo models")
    demo_models.add_argument("--force", action="store_true", help="rebuild even if present")

    models = commands.add_parser("models", help="the model registry (models.yaml)")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    add = models_commands.add_parser("add", help="register a model")
    add.add_argument("name")
    add.add_argument("--backend", required=True, choices=sorted(BACKENDS))
    add.add_argument("--path", help="transformers: local model folder")
    add.add_argument("--model", help="transformers: hub id; openai: model name")
    add.add_argument("--base-url", help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")
    add.add_argument("--api-key-env", help="openai: NAME of the variable holding the key")
    add.add_argument("--column", help="precomputed: dataset column holding the outputs")
    add.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--max-new-tokens", type=int)
    add.add_argument("--temperature", type=float)
    add.add_argument("--top-p", type=float)
    add.add_argument("--do-sample", action="store_true", default=None)
    add.add_argument("--seed", type=int)
    add.add_argument("--stop", action="append", help="stop string (repeatable)")
    add.add_argument("--prompt-template", help="uses {prompt} and may use {context}")
    add.add_argument("--baseline", action="store_true")
    add.add_argument("--replace", action="store_true", help="replace a model of that name")
    models_commands.add_parser("list", help="list registered models")
    remove = models_commands.add_parser("remove", help="unregister a model (history is kept)")
    remove.add_argument("name")

    score = commands.add_parser("score", help="score a file of predictions and references")
    score.add_argument("input", help="JSONL, CSV or Parquet with prediction and reference(s)")
    score.add_argument("--output", required=True, help="OUT.jsonl | OUT.csv | OUT.parquet")
    score.add_argument(
        "--metrics", help="comma-separated: rouge,correctness,perplexity,hallucination"
    )
    score.add_argument("--model", help="registered model or model folder, for perplexity")
    score.add_argument(
        "--nli-model",
        help="local NLI/HHEM model folder whose contradiction joins the hallucination index "
        "(default: nli_model from config.yaml)",
    )

    status_parser = commands.add_parser("status", help="the Delta tables and the leaderboard")
    status_parser.add_argument("--days", type=int, default=3, help="latest days shown (3)")

    ui = commands.add_parser("ui", help="start the Dagster and MLflow UIs on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000, help="Dagster UI port (3000)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (5000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A problem with the user's input or setup (a ``UserError``) is
    one line on stderr; anything else is a bug, reported with its type and, with
    ``--debug`` or ``LLM_EVAL_DEBUG=1``, its traceback. Either way the status is 1."""
    args = build_parser().parse_args(argv)
    os.environ.update(NO_TELEMETRY)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")
    try:
        return run_command(args)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"llm-eval: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: reported, never swallowed
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (run with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(f"llm-eval: internal error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1


def run_command(args: argparse.Namespace) -> int:
    """Dispatch a parsed command line."""
    settings = get_settings()
    if args.command == "ui":
        return start_ui(settings, args.port, args.mlflow_port)
    if args.command == "models":
        return models_command(settings, args)
    if args.command == "score":
        from llm_eval_pipeline.score_file import score_file

        groups = [g.strip() for g in args.metrics.split(",")] if args.metrics else None
        registry = ModelRegistry(settings.models_yaml)
        nli = args.nli_model or settings.nli_model
        score_file(Path(args.input), Path(args.output), groups, args.model, registry, nli)
        return 0
    if args.command == "status":
        return status(settings, max(1, args.days))
    if args.command == "demo-models":
        build_demo(settings, args.force)
        return 0
    if args.command == "demo":
        if args.days < 1:
            raise CliError("--days must be at least 1")
        end = latest_day()
        start = end - dt.timedelta(days=args.days - 1)
        settings = settings.with_dataset(demo_dataset_path(), DEMO_DATASET_NAME)
        days = date_range(start, end, settings)
        request = RunRequest(days=days, models=register_demo_models(settings))
    else:
        if args.dataset:
            settings = settings.with_dataset(args.dataset, args.name)
        elif args.name:
            if settings.dataset is None:
                raise CliError(
                    "--name names the dataset of --dataset (or of `dataset` in "
                    "config.yaml), and neither is set"
                )
            settings = settings.with_dataset(settings.dataset, args.name)
        end = args.end or latest_day()
        request = RunRequest(days=date_range(args.start or end, end, settings), models=args.models)
    return run_pipeline(settings, request)


def entry() -> None:
    """The ``llm-eval`` console script: run :func:`main`, flush, and leave with its exit
    status at once. Native libraries' thread pools (delta-rs, Arrow, torch) can abort the
    interpreter's own teardown after the work is done ("terminate called without an active
    exception", exit 134), which a scheduler would count as a failed run; ``os._exit`` skips
    that teardown. Everything the command wrote is committed before ``main`` returns."""
    code = 1
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help (0) and bad arguments (2)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        _stop_spark()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _stop_spark() -> None:
    """Stop this process's SparkSession, if it started one, so its JVM cleans up."""
    if "pyspark" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        with contextlib.suppress(Exception):
            session.stop()


if __name__ == "__main__":
    entry()
