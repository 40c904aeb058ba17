"""B4: greedy generation of 256 prompts on the tiny demo models.

Batched backend (rows sorted by length, batches of 16, left padding) against a plain
one-prompt-at-a-time ``model.generate`` loop. Both sides must produce the same outputs
before they are timed; the ratio is of generated tokens per second.

    .venv/bin/python benchmarks/generation.py [--repetitions 5] [--prompts 256]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import demo_model_specs, repeat
from llm_eval_pipeline.cli import demo_dataset_path
from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.backends.base import GenerationInput
from llm_eval_pipeline.core.models import ModelSpec


def prompts(spec: ModelSpec, n: int) -> list[GenerationInput]:
    records = [json.loads(line) for line in Path(demo_dataset_path()).read_text().splitlines()]
    rows = [records[i % len(records)] for i in range(n)]
    return [
        GenerationInput(f"{i}", spec.generation.render(r["prompt"], r["context"]))
        for i, r in enumerate(rows)
    ]


def one_at_a_time(backend, inputs: list[GenerationInput], max_new_tokens: int) -> list[tuple]:
    tokenizer, model = backend.tokenizer, backend.model
    results = []
    for row in inputs:
        ids = tokenizer(row.text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        results.append((tokenizer.decode(new, skip_special_tokens=True), len(new)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"B4 greedy generation, {args.prompts} prompts, {args.repetitions} repetitions, "
        f"torch {torch.__version__}, {args.threads} threads"
    )
    print(f"{'model':<12} {'side':<22} {'median (min-max)':<34} {'tokens':>7} {'tokens/s':>9}")
    for name, spec in demo_model_specs().items():
        spec = replace(spec, generation=replace(spec.generation, stop=()))
        backend = load_backend(spec)
        inputs = prompts(spec, args.prompts)
        max_new = spec.generation.max_new_tokens
        batched = [(o.output, o.output_tokens) for o in backend.generate(inputs)]
        reference = one_at_a_time(backend, inputs, max_new)
        mismatches = sum(a != b for a, b in zip(batched, reference, strict=True))
        if mismatches:
            raise SystemExit(f"{name}: {mismatches} outputs differ between the two sides")
        tokens = sum(n for _, n in reference)
        loop_time, _ = repeat(partial(one_at_a_time, backend, inputs, max_new), args.repetitions)
        batch_time, _ = repeat(partial(backend.generate, inputs), args.repetitions)
        for side, timing in (("one at a time", loop_time), ("batched backend", batch_time)):
            rate = tokens / timing.median
            print(f"{name:<12} {side:<22} {timing.describe():<34} {tokens:>7} {rate:>9.0f}")
        print(
            f"{name:<12} ratio (tokens/s batched / one at a time): "
            f"{loop_time.median / batch_time.median:.1f}x; outputs identical: yes"
        )


if __name__ == "__main__":
    main()
