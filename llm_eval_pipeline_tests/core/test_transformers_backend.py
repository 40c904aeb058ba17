"""The transformers backend on the tiny demo models (built by the real builder)."""

import json
import logging
from pathlib import Path

import pytest
import torch

from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.backends.base import FINISH_LENGTH, FINISH_STOP, GenerationInput
from llm_eval_pipeline.core.models import GenerationConfig, ModelSpec
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import QA_MODEL


def demo_inputs(spec: ModelSpec, n: int) -> list[GenerationInput]:
    lines = Path(demo_dataset_path()).read_text().splitlines()[:n]
    records = [json.loads(line) for line in lines]
    return [
        GenerationInput(r["id"], spec.generation.render(r["prompt"], r["context"])) for r in records
    ]


def with_generation(spec: ModelSpec, **changes: object) -> ModelSpec:
    fields = {**spec.generation.__dict__, **changes}
    return ModelSpec(spec.name, spec.backend, dict(spec.options), GenerationConfig(**fields))


def test_batched_greedy_equals_one_prompt_at_a_time(tiny_specs) -> None:
    spec = with_generation(tiny_specs[QA_MODEL], stop=(), max_new_tokens=12)
    backend = load_backend(spec)
    inputs = demo_inputs(spec, 24)
    batched = backend.generate(inputs)

    # reference: transformers' own generate on each unpadded prompt
    tokenizer, model = backend.tokenizer, backend.model
    reference = []
    for row in inputs:
        ids = tokenizer(row.text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        reference.append((tokenizer.decode(new, skip_special_tokens=True), len(new), ids.shape[1]))

    assert [(o.output, o.output_tokens, o.prompt_tokens) for o in batched] == reference
    assert len({o.output for o in batched}) > 1, "the outputs should differ between prompts"
    assert all(o.error is None for o in batched)
    assert {o.finish_reason for o in batched} <= {FINISH_STOP, FINISH_LENGTH}


def test_stop_strings_cut_the_output(tiny_specs) -> None:
    spec = with_generation(tiny_specs[QA_MODEL], max_new_tokens=24)
    free = load_backend(with_generation(spec, stop=())).generate(demo_inputs(spec, 8))
    cut = load_backend(spec).generate(demo_inputs(spec, 8))
    for f, c in zip(free, cut, strict=True):
        assert "\n" not in c.output
        assert f.output.startswith(c.output)
        if "\n" in f.output:
            assert c.finish_reason == FINISH_STOP
            assert c.output == f.output.split("\n")[0]


def test_seeded_sampling_is_reproducible(tiny_specs) -> None:
    spec = with_generation(
        tiny_specs[QA_MODEL], do_sample=True, temperature=1.5, seed=7, stop=(), max_new_tokens=10
    )
    inputs = demo_inputs(spec, 6)
    first = [o.output for o in load_backend(spec).generate(inputs)]
    again = [o.output for o in load_backend(spec).generate(inputs)]
    other = [o.output for o in load_backend(with_generation(spec, seed=8)).generate(inputs)]
    assert first == again
    assert first != other


def test_over_long_prompts_keep_their_end(tiny_specs) -> None:
    spec = with_generation(tiny_specs[QA_MODEL], max_new_tokens=4)
    backend = load_backend(spec)
    (out,) = backend.generate([GenerationInput("long", "word " * 5000 + "Answer:")])
    assert out.error is None
    assert out.prompt_tokens == backend.max_context - 4


def test_a_failed_batch_is_logged_once_then_generated_row_by_row(
    tiny_specs, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch that fails as a whole (say, out of memory) is retried one row at a time;
    the batch's exception is logged once with the row count, not dropped."""
    backend = load_backend(with_generation(tiny_specs[QA_MODEL], max_new_tokens=4))
    whole = backend._generate_ids

    def fails_for_batches(ids: list[list[int]]):
        if len(ids) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return whole(ids)

    backend._generate_ids = fails_for_batches
    inputs = demo_inputs(backend.spec, 5)
    with caplog.at_level(logging.WARNING):
        outputs = backend.generate(inputs)
    assert all(o.error is None and o.output is not None for o in outputs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "a batch of 5 rows failed (RuntimeError: CUDA out of memory" in warnings[0]
