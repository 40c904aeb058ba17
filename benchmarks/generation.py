"""B4: greedy generation of 256 prompts on the tiny demo models.

Batched backend (rows sorted by length, batches of 16, left padding) against a plain
one-prompt-at-a-time ``model.generate`` loop. Both sides must produce the same outputs
before they are timed; the ratio is of generated tokens per second.

    .venv/bin/python -m benchmarks.generation [--repetitions 5] [--quick]
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import Result, demo_model_specs, main_for, repeat
from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.backends.base import GenerationInput
from llm_eval_pipeline.core.models import ModelSpec
from llm_eval_pipeline.demo import demo_dataset_path


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


def run(repetitions: int = 5, quick: bool = False, n_prompts: int = 256) -> list[Result]:
    n_prompts = 32 if quick else n_prompts
    results = []
    for name, spec in demo_model_specs().items():
        spec = replace(spec, generation=replace(spec.generation, stop=()))
        backend = load_backend(spec)
        inputs = prompts(spec, n_prompts)
        max_new = spec.generation.max_new_tokens
        batched = [(o.output, o.output_tokens) for o in backend.generate(inputs)]
        reference = one_at_a_time(backend, inputs, max_new)
        mismatches = sum(a != b for a, b in zip(batched, reference, strict=True))
        if mismatches:
            raise SystemExit(f"B4 {name}: {mismatches} outputs differ between the two sides")
        tokens = sum(n for _, n in reference)
        loop_time, _ = repeat(partial(one_at_a_time, backend, inputs, max_new), repetitions)
        batch_time, _ = repeat(partial(backend.generate, inputs), repetitions)
        ratio = loop_time.median / batch_time.median
        results.append(
            Result(
                "B4",
                f"greedy generation of {n_prompts} prompts, {name} "
                f"(batch size {backend.batch_size}, max {max_new} new tokens)",
                "one-prompt-at-a-time generate loop",
                "batched transformers backend",
                loop_time,
                batch_time,
                ratio,
                "same outputs, >= 5x the tokens/s",
                ratio >= 5,
                [
                    f"outputs identical; {tokens} tokens: "
                    f"{tokens / loop_time.median:.0f} vs {tokens / batch_time.median:.0f} tokens/s",
                ],
                shortfall=(
                    f"{name} answered in {tokens / len(reference):.1f} tokens on average "
                    f"(longest {max(n for _, n in reference)}, at most {max_new}): a batch "
                    f"of {backend.batch_size} runs until its longest row ends, while the loop "
                    f"stops each prompt at its own end"
                ),
            )
        )
    return results


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
