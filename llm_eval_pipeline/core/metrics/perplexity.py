"""Perplexity and bits per byte of a continuation under a causal language model.

For a templated prompt ``p`` and a continuation ``c`` (a reference, or the model's own
output), with ``c``'s tokens ``t_1..t_n`` scored after the prompt's tokens (prompt
positions carry the label -100 and are not scored):

    NLL(c | p) = - sum_i log P(t_i | p, t_<i)
    perplexity = exp(NLL / n)
    bits_per_byte = NLL / (ln 2 * UTF-8 bytes of c)

as in Hugging Face's "Perplexity of fixed-length models" guide and lm-evaluation-harness's
``loglikelihood`` (Gao et al.); bits per byte makes models with different tokenizers
comparable. When the prompt ends without whitespace and the continuation starts without
it, a space joins them (the continuation's byte count excludes it). An empty continuation
has no perplexity.

Sequences are scored in batches sorted by length, right-padded (pad labels -100, attention
masks). A sequence longer than the model's context ``C`` is scored in windows of ``C``
tokens moved by ``stride`` (default ``C // 2``; under ``C``): every token is scored once, in the
first window that ends at or after it, with up to ``C - stride`` tokens of context before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ContinuationScore:
    nll: float
    tokens: int
    bytes: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / (math.log(2) * self.bytes) if self.bytes else float("nan")


def join_continuation(prompt: str, continuation: str) -> str:
    if prompt and continuation and not prompt[-1].isspace() and not continuation[0].isspace():
        return " " + continuation
    return continuation


@dataclass
class _Window:
    row: int
    ids: list[int]
    labels: list[int]


class PerplexityScorer:
    """Scores continuations with one loaded model and tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        render: Callable[[str, str | None], str],
        device: str = "cpu",
        batch_size: int = 8,
        stride: int | None = None,
        max_context: int | None = None,
    ) -> None:
        self.model, self.tokenizer, self.render = model, tokenizer, render
        self.device, self.batch_size = device, batch_size
        config = model.config
        self.context = (
            max_context
            or getattr(config, "n_positions", None)
            or getattr(config, "max_position_embeddings", 1024)
        )
        self.stride = stride or max(1, self.context // 2)
        if not 0 < self.stride < self.context:
            raise ValueError(f"stride {self.stride} must be in (0, {self.context})")

    def score(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[ContinuationScore | None]:
        """One score per (prompt, continuation); None for an empty continuation."""
        windows: list[_Window] = []
        meta: list[tuple[int, int] | None] = []
        for row, (prompt, continuation) in enumerate(zip(prompts, continuations, strict=True)):
            if not continuation:
                meta.append(None)
                continue
            joined = join_continuation(prompt, continuation)
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            cont_ids = self.tokenizer(joined, add_special_tokens=False)["input_ids"]
            if not cont_ids:
                meta.append(None)
                continue
            ids = prompt_ids + cont_ids
            labels = [-100] * len(prompt_ids) + cont_ids
            if not prompt_ids:
                # the first token has nothing to be predicted from: start from BOS/EOS
                bos = self.tokenizer.bos_token_id
                bos = self.tokenizer.eos_token_id if bos is None else bos
                ids, labels = [bos, *ids], [-100, *labels]
            windows.extend(self._windows(row, ids, labels))
            meta.append((len(cont_ids), len(continuation.encode("utf-8"))))
        nll = self._nll(windows, len(meta))
        return [
            ContinuationScore(nll[row], m[0], m[1]) if m is not None else None
            for row, m in enumerate(meta)
        ]

    def _windows(self, row: int, ids: list[int], labels: list[int]) -> list[_Window]:
        if len(ids) <= self.context:
            return [_Window(row, ids, labels)]
        windows, scored_until = [], 0
        end = self.context
        while scored_until < len(ids):
            end = min(end, len(ids))
            begin = max(0, end - self.context)
            window_labels = [
                label if i >= scored_until else -100
                for i, label in zip(range(begin, end), labels[begin:end], strict=True)
            ]
            windows.append(_Window(row, ids[begin:end], window_labels))
            scored_until = end
            end += self.stride
        return windows

    def _nll(self, windows: list[_Window], rows: int) -> list[float]:
        totals = [0.0] * rows
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        ordered = sorted(windows, key=lambda w: len(w.ids))
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            width = max(len(w.ids) for w in batch)
            ids = torch.tensor([w.ids + [pad] * (width - len(w.ids)) for w in batch])
            labels = torch.tensor([w.labels + [-100] * (width - len(w.labels)) for w in batch])
            mask = torch.tensor([[1] * len(w.ids) + [0] * (width - len(w.ids)) for w in batch])
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits.float()
            shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
            targets = labels[:, 1:].reshape(-1).to(self.device)
            token_nll = torch.nn.functional.cross_entropy(
                shifted, targets, ignore_index=-100, reduction="none"
            ).view(len(batch), -1)
            for window, value in zip(batch, token_nll.sum(dim=1).tolist(), strict=True):
                totals[window.row] += value
        return totals
