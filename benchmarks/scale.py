"""B9: the pipeline's data path at scale. One day of precomputed outputs (the
``precomputed`` backend, so that it measures the pipeline and not a model) at 10,000 /
100,000 / 1,000,000 rows of about 300 bytes: ingestion (``ingest_day``), the
``generations`` write (``generate_partition``) and the ``example_metrics`` stage
(``score_partition``, the ``rouge`` and ``correctness`` groups: the hallucination group's
cost is B12's and would make the 1,000,000-row day take an hour here), on ``local[2]`` and
on a Spark standalone cluster of two one-core workers on 127.0.0.1.

Each size runs in a fresh process that does only that; its Python peak resident set
(``VmHWM`` of ``/proc/self/status``, the kernel's own high-water mark, so nothing is
missed between samples) and the JVM's are read when the stages are done. At the smallest
size the process also runs the driver-side path (ingestion in the driver, every table
collected with ``toArrow()`` and written by delta-rs from the driver) into a second
store, and the three tables must equal row for row (``latency_ms`` aside).

    .venv/bin/python -m benchmarks.scale [--quick] [--masters local,cluster] [--stages-only]
    .venv/bin/python -m benchmarks.scale --whole-run      # B9r
    .venv/bin/python -m benchmarks.scale --report LOG...  # RESULTS.md from earlier runs' output
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyspark

from benchmarks.common import Result, Timing

DAY = dt.date(2026, 11, 20)
MODEL = {"name": "logged", "backend": "precomputed", "options": {"column": "logged_answer"}}
GROUPS = ("rouge", "correctness")
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 20_000)
WORDS = (
    "river", "mountain", "city", "king", "queen", "war", "treaty", "empire", "museum",
    "railway", "bridge", "harbour", "college", "novel", "painter", "composer", "island",
    "desert", "forest", "century", "battle", "election", "republic", "province",
    "cathedral", "festival", "theatre", "airport", "canal", "valley",
)  # fmt: skip
SPARK_HOME = Path(pyspark.__file__).parent


# ---------------------------------------------------------------- the data


def write_rows(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct JSON Lines rows: question, context, references and a logged answer
    that is right, partly right or wrong."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            a, b, c, d = rng.sample(WORDS, 4)
            year = 1500 + rng.randrange(500)
            answer = f"the {a} {b} of {year}"
            logged = rng.choice(
                (answer, f"the {a} {c} of {year}", f"a {d} near the {b}", f"it was the {answer}")
            )
            row = {
                "id": f"q{i:07d}",
                "question": f"Which {a} is linked to the {b} and the {c} in record {i}?",
                "context": f"Record {i} tells of the {a} {b} of {year}, seen from the {c} {d}.",
                "answers": [answer],
                "logged_answer": logged,
            }
            out.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------- one size, in its own process


def peak_mib(pid: int | str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def comparable(store, spec, partition) -> list[dict]:
    from llm_eval_pipeline.core.schema import Col

    key = Col.EXAMPLE_ID if Col.EXAMPLE_ID in spec.columns else Col.SOURCE_ROW
    rows = store.read_arrow(spec, partition).to_pylist()
    for row in rows:
        row.pop(Col.LATENCY_MS, None)
    return sorted(rows, key=lambda r: r[key])


def driver_side_tables(spark, settings, incoming: Path, spec, config, root: Path) -> dict:
    """The three tables as the driver-side path writes them (ingestion in the driver,
    ``toArrow()`` of whole partitions written by delta-rs from the driver)."""
    from llm_eval_pipeline.core.schema import EVAL_EXAMPLES, EXAMPLE_METRICS, GENERATIONS, Col
    from llm_eval_pipeline.delta.store import DeltaStore
    from llm_eval_pipeline.spark.udfs import generate_outputs, score_outputs
    from llm_eval_pipeline.stages import ingest_day, scoring_input

    store = DeltaStore(root)
    ingest_day(
        store, spark, DAY, static_path=None, incoming=incoming, allowed_roots=[incoming],
        dataset_name="scale", max_field_chars=settings.max_field_chars,
        default_task=settings.default_task, spark_ingest_min_bytes=None,
    )  # fmt: skip
    partition = {Col.EVAL_DATE: DAY, Col.MODEL_ID: spec.name}
    examples = store.read(spark, EVAL_EXAMPLES, {Col.EVAL_DATE: DAY})
    generated, _ = generate_outputs(examples, spec, settings.generation_partitions)
    store.write_partition(GENERATIONS, generated.toArrow(), partition)
    joined = scoring_input(store, spark, DAY, spec.name)
    scored, _ = score_outputs(joined, spec, config, settings.generation_partitions)
    store.write_partition(EXAMPLE_METRICS, scored.toArrow(), partition)
    return {"store": store, "partition": partition}


def child(incoming: Path, compare: bool) -> None:
    """Run the three stages on the day of ``incoming``; print one JSON line."""
    from pyspark.sql import SparkSession

    from llm_eval_pipeline.core.metrics.config import MetricConfig
    from llm_eval_pipeline.core.models import parse_spec
    from llm_eval_pipeline.core.schema import (
        EVAL_EXAMPLES,
        EXAMPLE_METRICS,
        GENERATIONS,
        QUARANTINED_EXAMPLES,
        Col,
    )
    from llm_eval_pipeline.delta.store import DeltaStore
    from llm_eval_pipeline.settings import get_settings
    from llm_eval_pipeline.spark.session import spark_conf, use_this_python_for_workers
    from llm_eval_pipeline.stages import generate_partition, ingest_day, score_partition

    settings = get_settings()
    use_this_python_for_workers(settings)
    spark = SparkSession.builder.config(map=spark_conf(settings)).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    started = peak_mib("self")
    store = DeltaStore(settings.delta_dir)
    spec, config = parse_spec(MODEL), MetricConfig(groups=GROUPS)
    seconds: dict[str, float] = {}

    clock = time.perf_counter()
    ingested = ingest_day(
        store, spark, DAY, static_path=None, incoming=incoming, allowed_roots=[incoming],
        dataset_name="scale", max_field_chars=settings.max_field_chars,
        default_task=settings.default_task,
        spark_ingest_min_bytes=settings.spark_ingest_min_bytes,
    )  # fmt: skip
    seconds["ingestion"] = time.perf_counter() - clock
    clock = time.perf_counter()
    generated = generate_partition(
        store, spark, spec, DAY, max_error_rate=settings.max_error_rate,
        partitions=settings.generation_partitions,
    )  # fmt: skip
    seconds["generations"] = time.perf_counter() - clock
    clock = time.perf_counter()
    scored = score_partition(
        store, spark, spec, config, DAY, partitions=settings.generation_partitions
    )
    seconds["example_metrics"] = time.perf_counter() - clock
    result = {
        "seconds": seconds,
        "python_peak_mib": peak_mib("self"),
        "python_after_start_mib": started,
        "jvm_peak_mib": peak_mib(jvm),
        "rows_in": ingested.rows_in,
        "valid": ingested.stored_valid,
        "quarantined": ingested.stored_quarantined,
        "balanced": ingested.balanced,
        "on_executors": ingested.on_executors,
        "generated": generated.rows,
        "scored": scored.rows,
        "executors": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1,
        "metric_tasks": sorted(event["seconds"] for event in scored.stats.events),
        "metric_group_seconds": scored.stats.seconds_per_group(),
    }
    if compare:
        theirs = driver_side_tables(
            spark, settings, incoming, spec, config, settings.home / "driver_side"
        )
        day = {Col.EVAL_DATE: DAY}
        pairs = [
            (EVAL_EXAMPLES, day),
            (QUARANTINED_EXAMPLES, day),
            (GENERATIONS, theirs["partition"]),
            (EXAMPLE_METRICS, theirs["partition"]),
        ]
        result["equal_tables"] = {
            table.name: comparable(store, table, part) == comparable(theirs["store"], table, part)
            for table, part in pairs
        }
    spark.stop()
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- the cluster


def master_state(ui: str) -> dict:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=2) as response:
            return json.load(response)
    except OSError:
        return {}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandaloneCluster:
    """A master and two one-core workers on 127.0.0.1, started with the ``spark-class``
    launcher in the pyspark package."""

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.folder, self.workers, self.processes = folder, workers, []
        self.port, self.ui_port = free_port(), free_port()
        self.url, self.ui = f"spark://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.ui_port}"

    def _start(self, name: str, *args: str) -> None:
        env = {
            **os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.folder / "logs"),
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }  # fmt: skip
        log = (self.folder / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen(
                [str(SPARK_HOME / "bin" / "spark-class"), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        )

    def __enter__(self) -> StandaloneCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))  # fmt: skip
        for i in range(self.workers):
            self._start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", self.url,
                        "--host", "127.0.0.1", "--cores", "1", "--memory", "3g",
                        "--webui-port", str(free_port()),
                        "--work-dir", str(self.folder / f"work{i}"))  # fmt: skip
        deadline = time.monotonic() + 120
        while master_state(self.ui).get("aliveworkers", 0) < self.workers:
            if time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"B9: the standalone cluster did not start (logs: {self.folder})")
            time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        from llm_eval_pipeline.cli.ui import stop_servers

        stop_servers(self.processes)


# ---------------------------------------------------------------- the parent


def run_size(home: Path, incoming: Path, master: str | None, compare: bool) -> dict:
    home.mkdir(parents=True)
    env = {
        **os.environ, "LLM_EVAL_HOME": str(home), "LLM_EVAL_SPARK_UI": "false",
        "PYSPARK_PYTHON": sys.executable,
    }  # fmt: skip
    if master is not None:
        env.update({"LLM_EVAL_PROFILE": "cluster", "LLM_EVAL_SPARK_MASTER": master,
                    "SPARK_LOCAL_IP": "127.0.0.1"})  # fmt: skip
        (home / "config.yaml").write_text(
            "spark_conf:\n  spark.driver.host: 127.0.0.1\n  spark.driver.bindAddress: 127.0.0.1\n"
            "  spark.executor.memory: 2g\n  spark.cores.max: '2'\n"
            "  spark.sql.shuffle.partitions: '4'\n"
        )
    args = [sys.executable, "-m", "benchmarks.scale", "--child", str(incoming)]
    done = subprocess.run(
        [*args, *(["--compare"] if compare else [])], env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"B9: the {master or 'local'} run failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def measure(sizes: tuple[int, ...], masters: list[str], folder: Path) -> dict:
    inputs = {}
    for n in sizes:
        incoming = folder / f"incoming-{n}"
        write_rows(incoming / DAY.isoformat() / "rows.jsonl", n)
        inputs[n] = incoming
    measured: dict[str, dict[int, dict]] = {}
    for where in masters:
        measured[where] = {}
        if where == "cluster":
            with StandaloneCluster(folder / "spark") as cluster:
                for n in sizes:
                    home = folder / f"{where}-{n}"
                    measured[where][n] = run_size(home, inputs[n], cluster.url, n == sizes[0])
        else:
            for n in sizes:
                home = folder / f"{where}-{n}"
                measured[where][n] = run_size(home, inputs[n], None, n == sizes[0])
        for n, result in measured[where].items():
            print(f"  {where} {n:>9,} rows: {json.dumps(result)}", flush=True)
    return measured


def report(measured: dict, sizes: tuple[int, ...]) -> Result:
    notes, met, misses = [], True, []
    first, last = sizes[0], sizes[-1]
    notes.append(
        f"precomputed outputs, metric groups {', '.join(GROUPS)}; rows of about 300 bytes; "
        "each size in a fresh process; peaks are VmHWM (Python driver) and the JVM's"
    )
    for where, results in measured.items():
        for n in sizes:
            r = results[n]
            s = r["seconds"]
            notes.append(
                f"{where:>7} {n:>9,} rows: ingestion {s['ingestion']:7.1f}s "
                f"({'tasks' if r['on_executors'] else 'driver'}), generations "
                f"{s['generations']:6.1f}s, example_metrics {s['example_metrics']:6.1f}s; "
                f"Python driver peak {r['python_peak_mib']:5.0f} MiB, "
                f"JVM {r['jvm_peak_mib']:5.0f} MiB; rows in {r['rows_in']:,} = "
                f"{r['valid']:,} valid + {r['quarantined']:,} quarantined; "
                f"{r['executors'] or 'local'} executors"
            )
            if "metric_tasks" in r:
                groups = ", ".join(
                    f"{g} {t:.0f}s" for g, t in sorted(r["metric_group_seconds"].items())
                )
                tasks = ", ".join(f"{t:.0f}s" for t in r["metric_tasks"])
                notes.append(f"{'':>7} {'':>9}  example_metrics tasks {tasks}; by group {groups}")
            if not r["balanced"] or r["generated"] != r["valid"] or r["scored"] != r["valid"]:
                met = False
                misses.append(f"{where} {n:,}: the counts do not balance")
        equal = results[first].get("equal_tables", {})
        notes.append(f"{where}: tables equal to the driver-side write at {first:,} rows: {equal}")
        if not equal or not all(equal.values()):
            met = False
            misses.append(f"{where}: the tables differ from the driver-side write: {equal}")
        for small, big in zip(sizes, sizes[1:], strict=False):
            for stage in results[small]["seconds"]:
                grow = results[big]["seconds"][stage] / results[small]["seconds"][stage]
                rows = big / small
                if grow > rows * 1.1:
                    met = False
                    misses.append(
                        f"{where} {stage}: {rows:.0f}x rows took {grow:.1f}x the time "
                        f"({small:,} -> {big:,})"
                    )
        growth = results[last]["python_peak_mib"] - results[first]["python_peak_mib"]
        notes.append(
            f"{where}: Python driver peak grows {growth:+.0f} MiB from {first:,} to {last:,} rows"
        )
        if growth >= 100:
            met = False
            misses.append(f"{where}: the Python driver's peak grew {growth:.0f} MiB")
    total = {
        n: sum(measured["local"][n]["seconds"].values()) if "local" in measured else None
        for n in sizes
    }
    ours = Timing([total[last]]) if total[last] is not None else None
    return Result(
        "B9",
        "ingestion + generations write + example_metrics, 1 day at "
        f"{', '.join(f'{n:,}' for n in sizes)} rows",
        "",
        f"three stages at {last:,} rows, local[2]",
        None,
        ours,
        None,
        "10x rows <= 11x time per stage; Python driver peak grows < 100 MiB; "
        "tables equal the driver-side write",
        met,
        notes,
        "; ".join(misses) or None,
    )


# ---------------------------------------------------------------- the whole command


WHOLE_RUN_GROUPS = ("rouge",)
"""As the scale issue's own table: a ``precomputed`` model and ROUGE only."""


def whole_run(home: Path, rows: Path) -> dict:
    """``llm-eval run`` of one day × one model on local[2] in a fresh home: its wall time
    and the peak resident set of its (driver) Python process, polled from ``VmHWM`` every
    0.2 s until it exits (a high-water mark: the last reading holds every earlier peak)."""
    home.mkdir(parents=True)
    incoming = home / "incoming" / DAY.isoformat()
    incoming.mkdir(parents=True)
    os.link(rows, incoming / "rows.jsonl")
    (home / "config.yaml").write_text(
        f"metric_groups: [{', '.join(WHOLE_RUN_GROUPS)}]\nregression_metrics: [rougeL]\n"
    )
    env = {
        **os.environ, "LLM_EVAL_HOME": str(home), "LLM_EVAL_SPARK_UI": "false",
        "LLM_EVAL_START_DATE": DAY.isoformat(), "LLM_EVAL_SPARK_MASTER": "local[2]",
    }  # fmt: skip
    llm_eval = str(Path(sys.executable).with_name("llm-eval"))
    options = ["--column", MODEL["options"]["column"], "--baseline"]
    subprocess.run(
        [llm_eval, "models", "add", MODEL["name"], "--backend", "precomputed", *options],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    day = ["--start", DAY.isoformat(), "--end", DAY.isoformat()]
    clock = time.perf_counter()
    process = subprocess.Popen(
        [llm_eval, "run", *day], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(OSError, RuntimeError):  # exiting
            peak = max(peak, peak_mib(process.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - clock
    output = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"B9: llm-eval run failed at {rows}:\n{output[-4000:]}")
    return {"seconds": seconds, "python_peak_mib": peak}


def measure_whole_runs(sizes: tuple[int, ...], folder: Path) -> Result:
    folder.mkdir(parents=True, exist_ok=True)
    measured = {}
    for n in sizes:
        rows = write_rows(folder / f"rows-{n}.jsonl", n)
        measured[n] = whole_run(folder / f"run-{n}", rows)
        print(f"  {WHOLE} {n:>9,} rows: {json.dumps(measured[n])}", flush=True)
    return report_whole_runs(measured)


WHOLE = "llm-eval-run"
_MEASURED = re.compile(r"^  +(\S+) +([\d,]+) rows: (\{.*\})$")


def read_logs(paths: list[Path]) -> tuple[dict, dict]:
    """The measurements a run printed (one line per size: where, rows, JSON), for
    writing its results later: (stage runs by master and size, whole runs by size)."""
    stages: dict[str, dict[int, dict]] = {}
    whole: dict[int, dict] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _MEASURED.match(line)
            if match:
                where, n, data = match[1], int(match[2].replace(",", "")), json.loads(match[3])
                (whole if where == WHOLE else stages.setdefault(where, {}))[n] = data
    return stages, whole


def report_whole_runs(measured: dict[int, dict]) -> Result:
    sizes = tuple(sorted(measured))
    last = sizes[-1]
    notes = [
        f"{n:>9,} rows: {r['seconds']:6.0f} s, driver Python peak {r['python_peak_mib']:5.0f} MiB"
        for n, r in measured.items()
    ]
    met = measured[last]["python_peak_mib"] < 800
    return Result(
        "B9r",
        f"whole `llm-eval run`, 1 day x 1 model (precomputed, {', '.join(WHOLE_RUN_GROUPS)} "
        f"only), local[2], at {', '.join(f'{n:,}' for n in sizes)} rows",
        "",
        f"llm-eval run at {last:,} rows",
        None,
        Timing([measured[last]["seconds"]]),
        None,
        f"driver Python peak < 800 MiB at {last:,} rows",
        met,
        notes,
        None if met else f"driver peak {measured[last]['python_peak_mib']:.0f} MiB",
    )


def run(
    repetitions: int = 1,
    quick: bool = False,
    masters: list[str] | None = None,
    whole_runs: bool = True,
) -> list[Result]:
    del repetitions  # one run per size: the 1,000,000-row day takes minutes
    sizes = QUICK_SIZES if quick else SIZES
    with tempfile.TemporaryDirectory(prefix="llm_eval_b9_") as folder:
        measured = measure(sizes, masters or ["local", "cluster"], Path(folder))
        whole = [measure_whole_runs(sizes, Path(folder) / "whole")] if whole_runs else []
    return [report(measured, sizes), *whole]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 rows")
    parser.add_argument("--masters", default="local,cluster", help="local, cluster or both")
    parser.add_argument(
        "--stages-only", action="store_true", help="the stages without the whole runs (B9r)"
    )
    parser.add_argument(
        "--report", type=Path, nargs="+", metavar="LOG",
        help="write B9 (and B9r) into RESULTS.md from the output of earlier runs "
        "(e.g. --masters local and --masters cluster run one after the other)",
    )  # fmt: skip
    parser.add_argument(
        "--whole-run", action="store_true",
        help="time whole `llm-eval run`s (precomputed model, ROUGE) instead of the stages, "
        "and write B9r into RESULTS.md (not with --quick)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.compare)
        return
    if args.whole_run:
        from benchmarks.run_all import RESULTS, merge_later

        with tempfile.TemporaryDirectory(prefix="llm_eval_b9r_") as folder:
            result = measure_whole_runs(QUICK_SIZES if args.quick else SIZES, Path(folder))
        result.print()
        if not args.quick:
            when = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
            how = "`python -m benchmarks.scale --whole-run` ending at"
            RESULTS.write_text(
                merge_later(RESULTS.read_text(encoding="utf-8"), [result], how, when)
            )
            print(f"Wrote B9r into {RESULTS} (Measured since)")
        return
    if args.report:
        from benchmarks.run_all import RESULTS, merge_later

        stages, whole = read_logs(args.report)
        sizes = tuple(sorted(set.intersection(*(set(by_size) for by_size in stages.values()))))
        results = [report(stages, sizes), *([report_whole_runs(whole)] if whole else [])]
        for result in results:
            result.print()
        ended = max(path.stat().st_mtime for path in args.report)
        when = f"{dt.datetime.fromtimestamp(ended, dt.UTC):%Y-%m-%d %H:%M} UTC"
        how = "`python -m benchmarks.scale` runs read back by `--report`, the last ending at"
        RESULTS.write_text(merge_later(RESULTS.read_text(encoding="utf-8"), results, how, when))
        print(f"Wrote {', '.join(r.id for r in results)} into {RESULTS} (Measured since)")
        return
    masters = args.masters.split(",")
    for result in run(quick=args.quick, masters=masters, whole_runs=not args.stages_only):
        result.print()


if __name__ == "__main__":
    main()
