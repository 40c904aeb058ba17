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
masks), of at most ``batch_size`` sequences and ``max_batch_tokens`` positions (padding
included); logits are computed only from the batch's first scored position on (the model's
``logits_to_keep``, where its ``forward`` takes it). A sequence longer than the model's
context ``C`` is scored in windows of ``C`` tokens moved by ``stride`` (default ``C // 2``;
under ``C``): every token is scored once, in the first window that ends at or after it, with
up to ``C - stride`` tokens of context before. ``PerplexityScorer.stats`` counts the tokens
and the padding the last ``score`` call fed the model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_eval_pipeline.core.metrics.spec import GEOMETRIC, LOWER, NON_NEGATIVE, MetricSpec

if TYPE_CHECKING:
    import torch

GROUP = "perplexity"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("reference_perplexity", GROUP, LOWER, (1.0, float("inf")),
               "exp(mean NLL per token) of the first reference after the prompt",
               GEOMETRIC),
    MetricSpec("output_perplexity", GROUP, LOWER, (1.0, float("inf")),
               "exp(mean NLL per token) of the output after the prompt", GEOMETRIC),
    MetricSpec("reference_bits_per_byte", GROUP, LOWER, NON_NEGATIVE,
               "NLL of the first reference in bits per UTF-8 byte (tokenizer-independent)"),
)  # fmt: skip


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


@dataclass(frozen=True)
class ScoringStats:
    """What one ``score`` call fed the model: real token positions, padding positions
    (added to make batches rectangular) and model calls."""

    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0

    @property
    def padding_share(self) -> float:
        """Padding as a share of all positions processed."""
        total = self.tokens + self.padded_tokens
        return self.padded_tokens / total if total else 0.0


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
    """Scores continuations with one loaded model and tokenizer (``tokenizer`` may be None
    for :meth:`score_ids`)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        render: Callable[[str, str | None], str],
        device: str = "cpu",
        batch_size: int = 8,
        stride: int | None = None,
        max_context: int | None = None,
        max_batch_tokens: int | None = None,
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
        self.max_batch_tokens = max_batch_tokens  # a longer window is a batch of its own
        self.stats = ScoringStats()
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._bos = self._special_id("bos_token_id", "eos_token_id")
        self._pad = self._special_id("pad_token_id", "eos_token_id")

    def _special_id(self, *names: str) -> int | None:
        for source in (self.tokenizer, self.model.config):
            for name in names:
                value = getattr(source, name, None) if source is not None else None
                if isinstance(value, int):
                    return value
        return None

    def score(
        self, prompts: Sequence[str], continuations: Sequence[str]
    ) -> list[ContinuationScore | None]:
        """One score per (prompt, continuation); None for an empty continuation."""
        rows = [i for i, continuation in enumerate(continuations) if continuation]
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        prompt_ids = self._encode([prompts[i] for i in rows])
        cont_ids = self._encode([join_continuation(prompts[i], continuations[i]) for i in rows])
        out: list[ContinuationScore | None] = [None] * len(prompts)
        for i, score in zip(rows, self.score_ids(prompt_ids, cont_ids), strict=True):
            if score is not None:
                out[i] = ContinuationScore(
                    score.nll, score.tokens, len(continuations[i].encode("utf-8"))
                )
        return out

    def score_ids(
        self, prompt_ids: Sequence[Sequence[int]], continuation_ids: Sequence[Sequence[int]]
    ) -> list[ContinuationScore | None]:
        """:meth:`score` for token ids (``bytes`` is 0, so no bits per byte); None for an
        empty continuation."""
        windows: list[_Window] = []
        counts: list[int] = []
        pairs = zip(prompt_ids, continuation_ids, strict=True)
        for row, (prompt, continuation) in enumerate(pairs):
            counts.append(len(continuation))
            if not continuation:
                continue
            ids = [*prompt, *continuation]
            labels = [-100] * len(prompt) + list(continuation)
            if not prompt:
                # the first token has nothing to be predicted from: start from BOS/EOS
                if self._bos is None:
                    raise ValueError("an empty prompt needs a BOS or EOS token id")
                ids, labels = [self._bos, *ids], [-100, *labels]
            windows.extend(self._windows(row, ids, labels))
        nll = self._nll(windows, len(counts))
        return [
            ContinuationScore(nll[row], count, 0) if count else None
            for row, count in enumerate(counts)
        ]

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

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

    def _batches(self, windows: list[_Window]) -> list[list[_Window]]:
        """Windows sorted by length, cut into batches of at most ``batch_size`` windows
        and ``max_batch_tokens`` padded positions."""
        ordered = sorted(windows, key=lambda w: len(w.ids))
        batches: list[list[_Window]] = []
        for window in ordered:
            batch = batches[-1] if batches else None
            fits = (
                batch is not None
                and len(batch) < self.batch_size
                and (
                    self.max_batch_tokens is None
                    or (len(batch) + 1) * len(window.ids) <= self.max_batch_tokens
                )
            )
            if fits:
                batch.append(window)
            else:
                batches.append([window])
        return batches

    def _nll(self, windows: list[_Window], rows: int) -> list[float]:
        import torch

        totals = [0.0] * rows
        pad = 0 if self._pad is None else self._pad  # masked out: any id will do
        tokens = padded = 0
        batches = self._batches(windows)
        with torch.inference_mode():
            for batch in batches:
                width = len(batch[-1].ids)  # sorted: the last is the longest
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for i, window in enumerate(batch):
                    n = len(window.ids)
                    ids[i, :n] = torch.tensor(window.ids)
                    labels[i, :n] = torch.tensor(window.labels)
                    mask[i, :n] = 1
                    tokens += n
                padded += len(batch) * width - sum(len(w.ids) for w in batch)
                for window, value in zip(batch, self._batch_nll(ids, labels, mask), strict=True):
                    totals[window.row] += value
        self.stats = ScoringStats(tokens, padded, len(batches))
        return totals

    def _batch_nll(
        self, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
    ) -> list[float]:
        """Each row's summed NLL of its labelled tokens given the tokens before them."""
        import torch

        targets = labels[:, 1:]  # position i predicts token i + 1
        kwargs = {}
        first = 0
        if self._keeps_logits:
            # logits only from the first position that predicts a labelled token
            scored_positions = (targets != -100).any(dim=0).nonzero()
            first = int(scored_positions[0]) if len(scored_positions) else 0
            kwargs["logits_to_keep"] = ids.shape[1] - first
        logits = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs
        ).logits
        targets = targets[:, first:].to(self.device)
        scored = targets != -100
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1][scored].float(), targets[scored], reduction="none"
        )
        row_of = scored.nonzero()[:, 0]
        sums = torch.zeros(len(ids), dtype=torch.float64, device=token_nll.device)
        return sums.index_add_(0, row_of, token_nll.double()).tolist()
