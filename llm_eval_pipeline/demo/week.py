"""The demo week: what happens on which day, and the files that make it happen.

A week of a small team's evaluation, built from the shipped demo dataset and the tiny
demo model (nothing downloaded):

* the eval set grows: it starts without two batches of the shipped examples; each batch is
  dropped into ``incoming/<day>/`` on its day, with a few bad rows that go to quarantine,
  and dropped again (fixed) on every later day;
* ``tiny-qa`` (the baseline, float32) and ``tiny-qa-bf16`` (the same weights served in
  bfloat16) run every day; ``tiny-qa-b64`` (the same weights and precision as the
  baseline, generating 64 prompts a batch for throughput) is registered mid-week with
  ``llm-eval models add`` and the new-model sensor backfills it over the earlier days;
* on the last day ``tiny-qa-bf16`` is redeployed with a shorter ``max_new_tokens`` "to
  cut latency": answers to questions are short and survive, summaries are cut, and
  ``metric_slices`` calls it a regression on the summarization slice.

This module plans the week and writes its files; ``cli/demo.py`` runs it through Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from llm_eval_pipeline.demo.models import MAX_NEW_TOKENS, QA_MODEL

DEMO_DAYS = 7
MIN_DAYS = 3
"""A week needs a day before the new model joins, the join, and the regression after it."""
BF16_MODEL = f"{QA_MODEL}-bf16"
BATCH64_MODEL = f"{QA_MODEL}-b64"
CUT_MAX_NEW_TOKENS = 8
"""What the last day's redeployment of ``tiny-qa-bf16`` cuts ``max_new_tokens`` to (from
``MAX_NEW_TOKENS``): longer than any answer, shorter than every summary."""
BATCHES = ("batch_a", "batch_b")
BATCH_EVERY = 10
"""Rows ``i`` with ``i % BATCH_EVERY == 3`` (batch_a) or ``== 7`` (batch_b) of the shipped
dataset are held back from the base set and dropped later."""
BASE_FILE = "demo_week_base.jsonl"
DEMO_MARGINS = {"regression_margin": 0.05, "regression_margin_floor": 0.04}
"""The demo's regression margins, wider than the defaults: with 130 to 162 examples a
day, the demo set cannot see a change of the default margin's size between models whose
outputs differ (the ``enough_examples`` check says so, with the pairs it would take)."""


@dataclass(frozen=True)
class WeekPlan:
    """Which day brings what; ``days`` runs oldest first, ending yesterday."""

    days: list[dt.date]
    drops: dict[str, dt.date]
    """Each batch's first day in the drop folder (with its bad rows)."""
    join_day: dt.date
    """The day ``tiny-qa-b64`` is registered (after that day's other runs)."""
    regression_day: dt.date

    @classmethod
    def of(cls, days: list[dt.date]) -> WeekPlan:
        if len(days) < MIN_DAYS:
            raise ValueError(f"the demo week needs at least {MIN_DAYS} days, got {len(days)}")
        n = len(days)
        drops = {BATCHES[0]: days[max(1, n // 3)], BATCHES[1]: days[max(1, (2 * n) // 3)]}
        return cls(days=days, drops=drops, join_day=days[n // 2], regression_day=days[-1])


def bad_rows(batch: str) -> list[dict]:
    """Rows that fail validation, each for a different reason, named after ``batch``."""
    rows = [
        {"id": f"{batch}-bad-1", "task": "qa", "prompt": "", "references": ["x"]},
        {"id": f"{batch}-bad-2", "task": "translation", "prompt": "Say hi.", "references": ["hi"]},
    ]
    return rows if batch == BATCHES[0] else rows[:1]


def split_dataset(dataset: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The shipped dataset's lines: the base set and the held-back batches."""
    lines = [line for line in dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
    batches = {batch: [] for batch in BATCHES}
    base = []
    for i, line in enumerate(lines):
        held = {3: BATCHES[0], 7: BATCHES[1]}.get(i % BATCH_EVERY)
        (batches[held] if held else base).append(line)
    return base, batches


def write_week_files(dataset: Path, folder: Path, incoming: Path, plan: WeekPlan) -> Path:
    """Write the base set under ``folder`` and every day's drops under ``incoming``
    (replacing what an earlier demo left there); the base set's path."""
    base, batches = split_dataset(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    base_path = folder / BASE_FILE
    base_path.write_text("\n".join(base) + "\n", encoding="utf-8")
    for day in plan.days:
        day_dir = incoming / day.isoformat()
        for batch, first in plan.drops.items():
            path = day_dir / f"{batch}.jsonl"
            if day < first:
                path.unlink(missing_ok=True)
                continue
            extra = [json.dumps(r) for r in bad_rows(batch)] if day == first else []
            day_dir.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(batches[batch] + extra) + "\n", encoding="utf-8")
    return base_path


def write_demo_config(path: Path) -> bool:
    """Write ``DEMO_MARGINS`` to a new ``config.yaml`` at ``path``; an existing file is
    left as it is. Whether it was written."""
    if path.exists():
        return False
    lines = [
        "# Written by `llm-eval demo`: the demo's 130 to 162 examples a day are too few to",
        "# see a change of the default margins (the enough_examples check says how many",
        "# pairs that would take), so the demo compares models with wider ones.",
        *(f"{key}: {value}" for key, value in DEMO_MARGINS.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return True


def model_args(models_dir: Path) -> dict[str, list[str]]:
    """``llm-eval models add`` arguments of each model of the week."""
    common = ["--backend", "transformers", "--path", str(models_dir / QA_MODEL)]
    common += ["--max-new-tokens", str(MAX_NEW_TOKENS), "--stop", "\n"]
    batch16, batch64 = ([*common, "--option", f"batch_size={n}"] for n in (16, 64))
    return {
        QA_MODEL: [QA_MODEL, *batch16, "--option", "dtype=float32", "--baseline"],
        BF16_MODEL: [BF16_MODEL, *batch16, "--option", "dtype=bfloat16"],
        BATCH64_MODEL: [BATCH64_MODEL, *batch64, "--option", "dtype=float32"],
    }


def redeploy_args(models_dir: Path) -> list[str]:
    """The last day's ``llm-eval models add --replace`` of ``tiny-qa-bf16``."""
    args = model_args(models_dir)[BF16_MODEL]
    cut = args.index("--max-new-tokens") + 1
    return [*args[:cut], str(CUT_MAX_NEW_TOKENS), *args[cut + 1 :], "--replace"]
