"""B3: perplexity of 512 (prompt, continuation) texts of mixed length with the tiny demo model.

The pipeline's batched ``PerplexityScorer.score`` (windows sorted by length and packed
into padded batches) against a one-text-at-a-time loop: per text, one
``model(input_ids, labels=...)`` call per window, windows placed as in Hugging Face's
"Perplexity of fixed-length models" guide (the prompt's positions carry the label -100).
Prompts are the demo dataset's, rendered with the model's template; continuations are cut
from the demo dataset's text at lengths drawn from a skewed distribution (5..400 tokens,
median about 40), so that a few texts exceed the model's context and are scored in
windows. Both sides must agree within 1e-4 (relative, fp32) before they are timed.
Goal: >= 5x the tokens/s of the loop, with padding <= 15% of the tokens processed.

    .venv/bin/python -m benchmarks.perplexity [--repetitions 5] [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import Result, demo_model_specs, repeat
from llm_eval_pipeline.cli import demo_dataset_path
from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer, join_continuation
from llm_eval_pipeline.demo.models import QA_MODEL

TEXTS, QUICK_TEXTS = 512, 64
SPEEDUP_GOAL, PADDING_GOAL, TOLERANCE = 5.0, 0.15, 1e-4


def texts(tokenizer, render, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` rendered prompts and continuations of 5..400 tokens (log-normal lengths)."""
    records = [json.loads(line) for line in Path(demo_dataset_path()).read_text().splitlines()]
    corpus = " ".join(
        part for r in records for part in (r.get("context") or "", *r["references"]) if part
    )
    ids = tokenizer(corpus, add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    prompts, continuations = [], []
    for _ in range(n):
        record = rng.choice(records)
        length = min(400, max(5, round(rng.lognormvariate(math.log(40), 0.9))))
        start = rng.randrange(len(ids) - length)
        prompts.append(render(record["prompt"], record.get("context")))
        continuations.append(tokenizer.decode(ids[start : start + length]))
    return prompts, continuations


def one_at_a_time(model, tokenizer, context: int, stride: int, prompts, continuations):
    """Total NLL of each continuation, one text (and one window) per model call."""
    totals = []
    for prompt, continuation in zip(prompts, continuations, strict=True):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        cont_ids = tokenizer(join_continuation(prompt, continuation), add_special_tokens=False)[
            "input_ids"
        ]
        ids = torch.tensor([prompt_ids + cont_ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + cont_ids])
        total, scored_until, end = 0.0, 0, context
        while scored_until < ids.shape[1]:  # windows of `context` tokens ending every `stride`
            end = min(end, ids.shape[1])
            begin = max(0, end - context)
            target = labels[:, begin:end].clone()
            target[:, : max(0, scored_until - begin)] = -100  # scored by an earlier window
            scored = int((target[:, 1:] != -100).sum())
            with torch.inference_mode():
                loss = model(input_ids=ids[:, begin:end], labels=target).loss
            total += loss.item() * scored
            scored_until, end = end, end + stride
        totals.append(total)
    return totals


def run(repetitions: int = 5, quick: bool = False) -> list[Result]:
    spec = demo_model_specs()[QA_MODEL]
    backend = load_backend(spec)
    model, tokenizer = backend.model, backend.tokenizer
    scorer = PerplexityScorer(model, tokenizer, spec.generation.render)
    prompts, continuations = texts(
        tokenizer, spec.generation.render, QUICK_TEXTS if quick else TEXTS
    )
    loop = partial(
        one_at_a_time, model, tokenizer, scorer.context, scorer.stride, prompts, continuations
    )
    batched = partial(scorer.score, prompts, continuations)

    expected, got = loop(), batched()
    worst = max(abs(s.nll - e) / e for s, e in zip(got, expected, strict=True))
    if worst > TOLERANCE:
        raise SystemExit(f"B3: batched NLL differs from the loop by {worst:.2e} (relative)")
    stats = scorer.stats
    windowed = sum(
        len(tokenizer(p + join_continuation(p, c), add_special_tokens=False)["input_ids"])
        > scorer.context
        for p, c in zip(prompts, continuations, strict=True)
    )
    slow, _ = repeat(loop, repetitions)
    fast, _ = repeat(batched, repetitions)
    ratio = slow.median / fast.median
    padding = stats.padding_share
    return [
        Result(
            id="B3",
            title=(
                f"perplexity of {len(prompts)} texts, {QA_MODEL}, {repetitions} repetitions, "
                f"{torch.get_num_threads()} threads"
            ),
            baseline_label="one text at a time (model(labels=))",
            ours_label="PerplexityScorer.score (batched)",
            baseline=slow,
            ours=fast,
            ratio=ratio,
            goal=f"within {TOLERANCE:g} relative, >= {SPEEDUP_GOAL:g}x, padding <= "
            f"{PADDING_GOAL:.0%}",
            met=ratio >= SPEEDUP_GOAL and padding <= PADDING_GOAL,
            notes=[
                f"largest relative NLL difference {worst:.1e} (checked before timing)",
                f"{stats.tokens:,} tokens processed ({sum(s.tokens for s in got):,} scored), "
                f"{windowed} texts over the {scorer.context}-token context (windowed); "
                f"{stats.batches} batches",
                f"tokens/s: loop {stats.tokens / slow.median:,.0f}, "
                f"batched {stats.tokens / fast.median:,.0f}",
                f"padding: {stats.padded_tokens:,} of {stats.tokens + stats.padded_tokens:,} "
                f"positions ({padding:.1%})",
            ],
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TEXTS} texts")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for result in run(args.repetitions, args.quick):
        result.print()


if __name__ == "__main__":
    main()
