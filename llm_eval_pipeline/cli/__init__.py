"""``llm-eval``: run the pipeline from a terminal, in the Dagster instance ``make ui`` opens.

llm-eval demo [--days N]
llm-eval demo-models [--force]
llm-eval models add NAME --backend B [options] | list | remove NAME
llm-eval score INPUT --output OUT [--metrics GROUPS] [--model NAME_OR_PATH]

llm-eval demo [--days N]
llm-eval run [--dataset PATH] [--name NAME] [--start YYYY-MM-DD] [--end YYYY-MM-DD]
             [--models a,b] [--dry-run]
llm-eval status [--days N]
llm-eval ui [--port 3000] [--mlflow-port 5000]
llm-eval serve [--port 3000] [--mlflow-port 5000]    (PostgreSQL: database_url)

Every command's exit status is its result: 0 done, 1 a problem it reported, 2 bad
arguments (see :func:`entry`).

One module per command; this one parses the command line and dispatches.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from llm_eval_pipeline.cli.models import models_command
from llm_eval_pipeline.cli.run import (
    CliError,
    RunRequest,
    build_demo,
    date_range,
    latest_day,
    run_pipeline,
)
from llm_eval_pipeline.cli.status import show_status
from llm_eval_pipeline.cli.ui import NO_TELEMETRY, start_ui
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.models import (
    BACKENDS,
    ModelRegistry,
    ModelSpecError,
    validate_model_name,
)
from llm_eval_pipeline.data import FABRICATED
from llm_eval_pipeline.demo.week import DEMO_DAYS, MIN_DAYS
from llm_eval_pipeline.settings import get_settings

DEBUG_ENV = "LLM_EVAL_DEBUG"


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

    demo = commands.add_parser(
        "demo", help="a week of evaluation on the shipped demo data, in which things happen"
    )
    demo.add_argument(
        "--days", type=int, default=DEMO_DAYS, help=f"how many days up to yesterday ({DEMO_DAYS})"
    )

    run = commands.add_parser("run", help="run the pipeline on a dataset for a range of days")
    run.add_argument("--dataset", help="dataset file or Delta table (else config.yaml)")
    run.add_argument("--name", help="dataset name (default: the file's stem)")
    run.add_argument("--start", type=_parse_date, help="first day, YYYY-MM-DD (default: --end)")
    run.add_argument(
        "--end", type=_parse_date, help="last day, YYYY-MM-DD (default: yesterday, UTC)"
    )
    run.add_argument("--models", type=_parse_models, default=[], help="model names, a,b")
    run.add_argument(
        "--dry-run", action="store_true",
        help="print the partitions, examples, tokens and cost it would take; write nothing",
    )  # fmt: skip

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
    add.add_argument("--price-per-1k-prompt-tokens", type=float, metavar="USD")
    add.add_argument("--price-per-1k-output-tokens", type=float, metavar="USD")
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

    validate = commands.add_parser(
        "validate-metric",
        help="how well the hallucination scores separate a labelled file's answers",
    )
    validate.add_argument("input", help="JSONL, CSV or Parquet: question/prompt, context, "
                          "reference (optional), answer/prediction and a label")  # fmt: skip
    validate.add_argument("--label-column", default="label", help="the label column (label)")
    validate.add_argument(
        "--positive", default=FABRICATED, help=f"the label of hallucinated rows ({FABRICATED})"
    )
    validate.add_argument("--output-column", help="the judged answer (prediction or answer)")
    validate.add_argument("--group-column", help="rows of one question (group, else prompt)")

    status_parser = commands.add_parser("status", help="the Delta tables and the leaderboard")
    status_parser.add_argument("--days", type=int, default=3, help="latest days shown (3)")

    ui = commands.add_parser("ui", help="start the Dagster and MLflow UIs on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000, help="Dagster UI port (3000)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (5000)")
    serve = commands.add_parser(
        "serve",
        help="the production deployment on 127.0.0.1: dagster-webserver, dagster-daemon and "
        "mlflow server, over PostgreSQL (database_url)",
    )
    serve.add_argument("--port", type=int, default=3000, help="Dagster UI port (3000)")
    serve.add_argument("--mlflow-port", type=int, default=5000, help="MLflow port (5000)")
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
    if args.command == "serve":
        from llm_eval_pipeline.cli.serve import start_serve

        return start_serve(settings, args.port, args.mlflow_port)
    if args.command == "models":
        return models_command(settings, args)
    if args.command == "score":
        from llm_eval_pipeline.score_file import score_file

        groups = [g.strip() for g in args.metrics.split(",")] if args.metrics else None
        registry = ModelRegistry(settings.models_yaml)
        nli = args.nli_model or settings.nli_model
        score_file(Path(args.input), Path(args.output), groups, args.model, registry, nli)
        return 0
    if args.command == "validate-metric":
        from llm_eval_pipeline.cli.validate import validate_metric

        validate_metric(
            Path(args.input), args.label_column, args.positive, args.output_column,
            args.group_column,
        )  # fmt: skip
        return 0
    if args.command == "status":
        return show_status(settings, max(1, args.days))
    if args.command == "demo-models":
        build_demo(settings, args.force)
        return 0
    if args.command == "demo":
        from llm_eval_pipeline.cli.demo import run_demo_week

        if args.days < MIN_DAYS:
            raise CliError(f"--days must be at least {MIN_DAYS}")
        end = latest_day()
        return run_demo_week(
            settings, date_range(end - dt.timedelta(days=args.days - 1), end, settings)
        )
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
    if args.dry_run:
        from llm_eval_pipeline.cli.plan import dry_run

        return dry_run(settings, request)
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
