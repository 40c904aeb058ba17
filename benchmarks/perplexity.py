"""B3: perplexity of 512 (prompt, continuation) texts of mixed length with the tiny demo model.

The pipeline's batched ``PerplexityScorer.score`` (windows sorted by length, right-padded
batches of the pipeline's default ``perplexity_batch_size``; also packed by a token budget)
against a one-text-at-a-time loop: per text, one ``model(input_ids, labels=...)`` call per
window (the prompt's positions carry the label -100), as in Hugging Face's "Perplexity of
fixed-length models" guide, with the windows the scorer documents (the ``C`` tokens ending
at ``C``, ``C + stride``, ...; each token scored in the first window that holds it).
Prompts are the demo dataset's, rendered with the model's template; continuations are cut
from the demo dataset's text at lengths drawn from a skewed distribution (5..400 tokens,
median about 40), so that a few texts exceed the model's context and are scored in
windows. Both sides must agree within 1e-4 (relative, fp32) before they are timed.
Goal: >= 5x the tokens/s of the loop, with padding <= 15% of the tokens processed.

    .venv/bin/python -m benchmarks.perplexity [--repetitions 5] [--quick]
"""

from __future__ import annotations

import json
import math
import random
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import Result, demo_model_specs, main_for, repeat
from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer, join_continuation
from llm_eval_pipeline.demo import demo_dataset_path
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
    model, tokenizer, render = backend.model, backend.tokenizer, spec.generation.render
    batch_size = MetricConfig().perplexity_batch_size
    scorer = PerplexityScorer(model, tokenizer, render, batch_size=batch_size)
    packed = PerplexityScorer(model, tokenizer, render, batch_size=64, max_batch_tokens=4096)
    prompts, continuations = texts(tokenizer, render, QUICK_TEXTS if quick else TEXTS)
    loop = partial(
        one_at_a_time, model, tokenizer, scorer.context, scorer.stride, prompts, continuations
    )
    expected = loop()
    worst = 0.0
    for side in (scorer, packed):
        got = side.score(prompts, continuations)
        worst = max(worst, *(abs(s.nll - e) / e for s, e in zip(got, expected, strict=True)))
    if worst > TOLERANCE:
        raise SystemExit(f"B3: batched NLL differs from the loop by {worst:.2e} (relative)")
    stats, packed_stats = scorer.stats, packed.stats
    windowed = stats.tokens - sum(
        len(p) + len(c)
        for p, c in zip(
            tokenizer(prompts, add_special_tokens=False)["input_ids"],
            tokenizer(
                [join_continuation(p, c) for p, c in zip(prompts, continuations, strict=True)],
                add_special_tokens=False,
            )["input_ids"],
            strict=True,
        )
    )
    slow, _ = repeat(loop, repetitions)
    fast, _ = repeat(partial(scorer.score, prompts, continuations), repetitions)
    fast_packed, _ = repeat(partial(packed.score, prompts, continuations), repetitions)
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
            ours_label=f"PerplexityScorer.score, batch {batch_size}",
            baseline=slow,
            ours=fast,
            ratio=ratio,
            goal=f"within {TOLERANCE:g} relative, >= {SPEEDUP_GOAL:g}x, padding <= "
            f"{PADDING_GOAL:.0%}",
            met=ratio >= SPEEDUP_GOAL and padding <= PADDING_GOAL,
            notes=[
                f"largest relative NLL difference {worst:.1e} (checked before timing)",
                f"{stats.tokens:,} tokens processed, {sum(s.tokens for s in got):,} of them "
                f"scored; {windowed:,} tokens re-read as context by the sliding window "
                f"(texts over the {scorer.context}-token context)",
                f"tokens/s: loop {stats.tokens / slow.median:,.0f}, "
                f"batched {stats.tokens / fast.median:,.0f}",
                f"padding: {stats.padded_tokens:,} of {stats.tokens + stats.padded_tokens:,} "
                f"positions ({padding:.1%}), {stats.batches} batches",
                f"packed by tokens (<= 64 texts, <= 4096 positions a batch): "
                f"{fast_packed.describe()}, {slow.median / fast_packed.median:.2f}x, "
                f"padding {packed_stats.padding_share:.1%}, {packed_stats.batches} batches",
            ],
            shortfall=(
                f"for the same {stats.tokens:,} tokens the loop took {slow.median:.2f} s and "
                f"the batched scorer {fast.median:.2f} s: batching removed "
                f"{slow.median - fast.median:.2f} s of per-call overhead; what remains "
                f"({stats.tokens / fast.median:,.0f} tokens/s on {torch.get_num_threads()} "
                f"threads) is the model's arithmetic, which batching does not shrink on a "
                f"CPU; padding was {padding:.1%}"
            ),
        )
    ]


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
