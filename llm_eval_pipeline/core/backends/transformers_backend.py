"""The ``transformers`` backend: a causal LM from a local path or a hub id.

Loading: ``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained`` with the spec's
``revision`` and ``dtype`` (``auto`` keeps the checkpoint's), ``trust_remote_code`` off
unless the spec turns it on, moved to the device the caller assigns (or the spec's
``device``).

Generation: rows are tokenized once, sorted by length and cut into batches of
``batch_size``, so a batch pads little; padding is on the left with an attention mask, so
every row's continuation starts at the same position. Greedy unless ``do_sample``; sampling
is seeded with ``seed`` before each batch. Prompts longer than the context minus
``max_new_tokens`` lose their start (the question sits at the end). A batch that raises is
retried one row at a time, so one bad row gets an error and the rest their outputs.

``latency_ms`` is the row's share of the wall time of its batch (batch time / rows), so
that the latencies of a partition add up to its generation time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import torch

from llm_eval_pipeline.core.backends.base import (
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationInput,
    GenerationOutput,
)
from llm_eval_pipeline.core.models import ModelSpec

LOG = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "auto": "auto",
}
DEFAULT_BATCH_SIZE = 16


def load_causal_lm(spec: ModelSpec, device: str) -> tuple[Any, Any]:
    """Tokenizer and model for ``spec``, in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = spec.options
    source = options.get("path") or options["model"]
    trust = bool(options.get("trust_remote_code", False))
    revision = options.get("revision")
    dtype_name = str(options.get("dtype", "auto"))
    if dtype_name not in DTYPES:
        raise ValueError(f"model {spec.name!r}: dtype {dtype_name!r} is not one of {list(DTYPES)}")
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        source, revision=revision, dtype=DTYPES[dtype_name], trust_remote_code=trust
    )
    model.to(device)
    model.eval()
    return tokenizer, model


def context_length(model: Any, tokenizer: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(min(tokenizer.model_max_length, 4096))


class TransformersBackend:
    def __init__(self, spec: ModelSpec, device: str = "cpu") -> None:
        requested = spec.options.get("device")
        self.device = device if requested in (None, "auto") else str(requested)
        self.spec = spec
        self.tokenizer, self.model = load_causal_lm(spec, self.device)
        self.batch_size = int(spec.options.get("batch_size", DEFAULT_BATCH_SIZE))
        self.max_context = context_length(self.model, self.tokenizer)

    def generate(self, batch: Sequence[GenerationInput]) -> list[GenerationOutput]:
        config = self.spec.generation
        max_prompt = max(1, self.max_context - config.max_new_tokens)
        self.tokenizer.truncation_side = "left"
        encoded = self.tokenizer(
            [row.text for row in batch], truncation=True, max_length=max_prompt
        )["input_ids"]
        order = sorted(range(len(batch)), key=lambda i: len(encoded[i]))
        results: list[GenerationOutput | None] = [None] * len(batch)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            try:
                outputs = self._generate_ids([encoded[i] for i in chunk])
            except Exception as exc:  # noqa: BLE001 - isolate the failing row below
                LOG.warning(
                    "%s: a batch of %d rows failed (%s: %s); generating them one by one",
                    self.spec.name, len(chunk), type(exc).__name__, str(exc)[:200],
                )  # fmt: skip
                outputs = [self._generate_one(encoded[i]) for i in chunk]
            for i, output in zip(chunk, outputs, strict=True):
                results[i] = output
        return [r for r in results if r is not None]

    def _generate_one(self, ids: list[int]) -> GenerationOutput:
        start = time.perf_counter()
        try:
            return self._generate_ids([ids])[0]
        except Exception as exc:  # noqa: BLE001 - a per-row error, reported in the row
            elapsed = (time.perf_counter() - start) * 1000
            return GenerationOutput.failed(f"{type(exc).__name__}: {exc}"[:500], elapsed)

    def _generate_ids(self, ids: list[list[int]]) -> list[GenerationOutput]:
        from transformers import GenerationConfig as HFGenerationConfig

        config = self.spec.generation
        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        padded = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        input_ids = padded["input_ids"].to(self.device)
        attention = padded["attention_mask"].to(self.device)
        hf_config = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=config.do_sample,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **(
                {"temperature": config.temperature or 1.0, "top_p": config.top_p}
                if config.do_sample
                else {}
            ),
        )
        extra: dict[str, Any] = {}
        if config.stop:
            hf_config.stop_strings = list(config.stop)
            extra["tokenizer"] = tokenizer
        if config.do_sample:
            torch.manual_seed(config.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids, attention_mask=attention, generation_config=hf_config, **extra
            )
        latency_ms = (time.perf_counter() - start) * 1000 / len(input_ids)
        new_tokens = generated[:, input_ids.shape[1] :].tolist()
        prompt_tokens = attention.sum(dim=1).tolist()
        return [
            self._decode(tokens, int(n_prompt), latency_ms)
            for tokens, n_prompt in zip(new_tokens, prompt_tokens, strict=True)
        ]

    def _decode(self, tokens: list[int], prompt_tokens: int, latency_ms: float) -> GenerationOutput:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        finish = FINISH_LENGTH
        if eos in tokens:
            tokens = tokens[: tokens.index(eos)]
            finish = FINISH_STOP
        if pad in tokens:  # a row stopped by a stop string is padded to the batch's length
            tokens = tokens[: tokens.index(pad)]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = min(
            (p for p in (text.find(s) for s in self.spec.generation.stop) if p >= 0), default=-1
        )
        if cut >= 0:
            text = text[:cut]
            finish = FINISH_STOP
        return GenerationOutput(text, prompt_tokens, len(tokens), latency_ms, finish)
