"""Shared helpers for the benchmark scripts: timing repetitions and the demo models."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import build_demo_models, demo_specs
from llm_eval_pipeline.settings import get_settings


@dataclass(frozen=True)
class Timing:
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def describe(self) -> str:
        return f"{self.median:.3f}s (min {min(self.seconds):.3f}, max {max(self.seconds):.3f})"


def repeat(fn: Callable[[], Any], repetitions: int) -> tuple[Timing, Any]:
    """Run ``fn`` ``repetitions`` times; the timings and the last result."""
    seconds, result = [], None
    for _ in range(repetitions):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds), result


def demo_model_specs(models_dir: Path | None = None) -> dict[str, Any]:
    """The demo model specs, building the models first if they are missing."""
    models_dir = models_dir or get_settings().models_dir
    build_demo_models(models_dir, Path(demo_dataset_path()), log=lambda _: None)
    return {spec.name: spec for spec in demo_specs(models_dir)}


@dataclass
class Result:
    """One row of RESULTS.md: a hot path measured against what a user would otherwise
    run, side by side in one process."""

    id: str  # "B1"
    title: str  # "ROUGE 1/2/L/Lsum on 10,000 pairs"
    baseline_label: str  # "rouge-score loop"
    ours_label: str  # "rouge_scores (rouge-score-rs)"
    baseline: Timing | None
    ours: Timing | None
    ratio: float | None  # how many times better ours is (baseline / ours, or a rate ratio)
    goal: str  # "identical, >= 50x"
    met: bool
    notes: list[str] = field(default_factory=list)  # checks done, extra measurements
    shortfall: str | None = None  # why the goal is missed, from this run's own figures

    def lines(self) -> list[str]:
        out = [f"{self.id} {self.title}"]
        if self.baseline is not None:
            out.append(f"  {self.baseline_label:<34} {self.baseline.describe()}")
        if self.ours is not None:
            out.append(f"  {self.ours_label:<34} {self.ours.describe()}")
        if self.ratio is not None:
            out.append(f"  {'ratio':<34} {self.ratio:.2f}x")
        out.append(f"  goal {self.goal}: {'met' if self.met else 'NOT met'}")
        out.extend(f"  {note}" for note in self.notes)
        if not self.met and self.shortfall:
            out.append(f"  why: {self.shortfall}")
        return out

    def print(self) -> None:
        print("\n".join(self.lines()), flush=True)


def main_for(run: Callable[..., list[Result]], doc: str) -> None:
    """The command line the benchmark scripts share: ``--repetitions N`` and ``--quick``
    (small sizes, a smoke run); prints every result."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = parser.parse_args()
    for result in run(repetitions=args.repetitions, quick=args.quick):
        result.print()
