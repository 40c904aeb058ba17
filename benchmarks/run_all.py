"""``make bench``: every benchmark in one process, one after the other, and
``benchmarks/RESULTS.md`` written from what they measured.

    .venv/bin/python -m benchmarks.run_all [--repetitions 5] [--quick] [--only B1,B5]

A run with ``--only`` keeps the rest of RESULTS.md and writes its rows into the section
"Measured since", each with the time of its own run, replacing an earlier entry of the
same id there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

from benchmarks.common import Result

RESULTS = Path(__file__).with_name("RESULTS.md")
# module: the benchmarks it runs
SCRIPTS = {
    "rouge": ("B1",),
    "squad": ("B2",),
    "perplexity": ("B3",),
    "generation": ("B4",),
    "spark_stage": ("B5", "B6", "B7"),
    "chain": ("B8",),
    "slices": ("B10",),
    "dashboard": ("B11",),
    "faithfulness": ("B12",),
    "scale": ("B9", "B9r"),
}
PACKAGES = ("torch", "transformers", "pyspark", "dagster", "mlflow", "deltalake", "pandas")


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    versions = ", ".join(f"{name} {version(name)}" for name in PACKAGES)
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory_kib / 2**20:.0f} GiB, no GPU",
        f"- Python {platform.python_version()}, {versions}",
    ]


def to_markdown(results: list[Result], seconds: float, repetitions: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in "
        f"{seconds / 60:.1f} minutes. Each row times both sides in the same process, one "
        f"after the other, after checking that they produce the same numbers; times are the "
        f"median of {repetitions} repetitions (min–max).",
        "",
        *machine(),
        "",
        "| # | hot path | compared with | theirs | ours | ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        theirs = r.baseline.describe() if r.baseline else ""
        ours = r.ours.describe() if r.ours else ""
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        lines.append(
            f"| {r.id} | {r.title} | {r.baseline_label} | {theirs} | {ours} | {ratio} | "
            f"{r.goal} | {'yes' if r.met else '**no**'} |"
        )
    missed = [r for r in results if not r.met]
    if missed:
        # each benchmark explains its own miss from the figures of this run
        lines += ["", "## Goals not met", ""]
        lines += [f"- **{r.id}** {r.title}: {r.shortfall or 'no explanation'}" for r in missed]
    lines += [
        "",
        "## GPU",
        "",
        "`benchmarks/gpu.py` (a GPT-2-medium-sized model in bf16: forward throughput and its "
        "share of the GPU's peak bf16 FLOP/s, batched against one-at-a-time generation) is "
        "ready for a machine with an NVIDIA GPU: `.venv/bin/python -m benchmarks.gpu`. No "
        "GPU was available where these results were measured, so it has not run yet.",
        "",
        "## Details",
        "",
    ]
    for r in results:
        lines += ["```", *r.lines(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes; RESULTS.md kept")
    parser.add_argument("--only", help="comma-separated ids, e.g. B1,B5")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    results: list[Result] = []
    for module, ids in SCRIPTS.items():
        if wanted is not None and not wanted & set(ids):
            continue
        print(f"== {module} ({', '.join(ids)})", flush=True)
        script = importlib.import_module(f"benchmarks.{module}")
        for result in script.run(repetitions=args.repetitions, quick=args.quick):
            result.print()
            results.append(result)
    seconds = time.perf_counter() - started
    print(f"\nAll benchmarks in {seconds / 60:.1f} minutes.")
    if not args.quick and wanted is None:
        RESULTS.write_text(to_markdown(results, seconds, args.repetitions), encoding="utf-8")
        print(f"Wrote {RESULTS}")
    elif not args.quick and results:
        RESULTS.write_text(merge_later(RESULTS.read_text(encoding="utf-8"), results))
        print(f"Wrote {', '.join(r.id for r in results)} into {RESULTS} (Measured since)")


LATER = "## Measured since"


def _later_entry(result: Result, when: str, how: str) -> str:
    ratio = f"{result.ratio:.2f}×" if result.ratio is not None else ""
    theirs = result.baseline.describe() if result.baseline else ""
    ours = result.ours.describe() if result.ours else ""
    return "\n".join(
        [
            f"<!-- {result.id} -->",
            f"### {result.id}, {how} {when}",
            "",
            "| # | hot path | compared with | theirs | ours | ratio | goal | met |",
            "|---|---|---|---|---|---|---|---|",
            f"| {result.id} | {result.title} | {result.baseline_label} | {theirs} | {ours} | "
            f"{ratio} | {result.goal} | {'yes' if result.met else '**no**'} |",
            "",
            *([f"Goal not met: {result.shortfall}", ""] if not result.met else []),
            "```",
            *result.lines(),
            "```",
            f"<!-- /{result.id} -->",
        ]
    )


def merge_later(
    text: str, results: list[Result], how: str = "`make bench`'s `--only` run of", when: str = ""
) -> str:
    """RESULTS.md with each of ``results`` in the section ``LATER``, replacing an entry of
    the same id; everything else kept as the last full run wrote it. ``how`` and ``when``
    (default: now) say which run measured them."""
    when = when or f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if LATER not in text:
        text = text.rstrip("\n") + (
            f"\n\n{LATER}\n\nRows measured after the full run above (`python -m "
            "benchmarks.run_all --only ...`, or a benchmark's own script), each with the time "
            "of its own run.\n"
        )
    for result in results:
        start, end = f"<!-- {result.id} -->", f"<!-- /{result.id} -->"
        entry = _later_entry(result, when, how)
        if start in text:
            head, rest = text.split(start, 1)
            text = head + entry + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + entry + "\n"
    return text


if __name__ == "__main__":
    main()
