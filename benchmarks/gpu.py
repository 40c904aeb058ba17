"""G1-G2: the perplexity scorer and batched greedy generation on an NVIDIA GPU.

A randomly initialised GPT-2-medium-sized model (24 layers, width 1024, 16 heads, vocabulary
50,257, context 1024; about 355M parameters) in bf16 on ``cuda``; nothing is downloaded and
no tokenizer is needed: inputs are random token ids (seeded).

* G1, perplexity forward: ``PerplexityScorer.score_ids`` (the project's scorer, fed token
  ids: length-sorted, right-padded batches, logits only from the first scored position)
  on texts of 128..1024 tokens (a prompt of 32..128 tokens, the rest scored) against a
  one-text-at-a-time ``model(input_ids, labels=...)`` loop. Throughput in tokens/s, and
  model FLOP/s (2 x parameters x tokens; attention FLOPs not counted, logits counted at
  every position, so an upper estimate) as a share of the GPU's dense bf16 peak (table
  below by ``torch.cuda.get_device_name()``, else ``--peak-tflops``). The NLLs must agree
  within 1e-2 relative (bf16) before timing.
* G2, greedy generation: one ``model.generate`` call on a batch of equal-length prompts
  against one ``model.generate`` call per prompt; ``do_sample=False``, a fixed number of new
  tokens (no EOS). Outputs are checked first: identical, or diverging only where the two
  best next tokens tie within bf16 noise (their logits within 0.1); else the script stops.

The goal: measure what batching buys on a GPU, which the CPU benchmarks (B3, B4) cannot
show. Sized to finish in a few minutes on an H100 (under 8 minutes in all):

    .venv/bin/python -m benchmarks.gpu [--repetitions 5] [--quick] [--peak-tflops 989]

Without CUDA, ``main`` says so and exits 0, and ``run`` raises RuntimeError.
"""

from __future__ import annotations

import argparse
import random
from functools import partial

import torch

from benchmarks.common import Result, repeat
from llm_eval_pipeline.core.metrics.perplexity import PerplexityScorer

# dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's data sheets; the
# first entry whose name is in the device's name wins, so the specific ones come first
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)
TIE_TOLERANCE = 0.1  # logits this close count as a tie in bf16
NLL_TOLERANCE = 1e-2  # relative, bf16
FULL = {"texts": 256, "prompts": 32, "prompt_tokens": 64, "new_tokens": 32}
QUICK = {"texts": 32, "prompts": 8, "prompt_tokens": 32, "new_tokens": 16}


def peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """The dense bf16 peak of ``device_name``; ``override`` wins; None when unknown."""
    if override is not None:
        return override
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters, a tied embedding / LM head once (``parameters()`` yields it once)."""
    return sum(p.numel() for p in model.parameters())


def model_flops(parameters: int, tokens: int) -> float:
    """Forward FLOPs: one multiply and one add per parameter per token."""
    return 2.0 * parameters * tokens


def build_model(device: str) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=50257, n_positions=1024, n_embd=1024, n_layer=24, n_head=16, pad_token_id=0
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT2LMHeadModel(config)
    # no early stop: every sequence gets exactly max_new_tokens
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.to(torch.bfloat16).eval()


def random_texts(n: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    prompts, continuations = [], []
    for _ in range(n):
        total, prompt = rng.randint(128, 1024), rng.randint(32, 128)
        ids = [rng.randrange(vocab) for _ in range(total)]
        prompts.append(ids[:prompt])
        continuations.append(ids[prompt:])
    return prompts, continuations


def loop_nll(model, device: str, prompts, continuations) -> list[float]:
    """One ``model(input_ids, labels=...)`` call per text; its summed NLL."""
    totals = []
    with torch.inference_mode():
        for prompt, continuation in zip(prompts, continuations, strict=True):
            ids = torch.tensor([prompt + continuation], device=device)
            labels = torch.tensor([[-100] * len(prompt) + continuation], device=device)
            totals.append(model(input_ids=ids, labels=labels).loss.item() * len(continuation))
    return totals


def generate(model, prompts: torch.Tensor, new_tokens: int, batched: bool) -> torch.Tensor:
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, pad_token_id=0)
    rows = [prompts] if batched else [prompts[i : i + 1] for i in range(len(prompts))]
    with torch.inference_mode():
        out = [
            model.generate(input_ids=r, attention_mask=torch.ones_like(r), generation_config=config)
            for r in rows
        ]
    torch.cuda.synchronize()
    return torch.cat(out)


def check_generation(model, batched: torch.Tensor, single: torch.Tensor) -> tuple[int, float]:
    """Sequences identical, and the largest logit gap where two diverge; exits when a
    divergence is not a tie."""
    identical, widest = 0, 0.0
    for a, b in zip(batched, single, strict=True):
        differ = (a != b).nonzero()
        if not len(differ):
            identical += 1
            continue
        at = int(differ[0])
        with torch.inference_mode():
            logits = model(input_ids=b[None, :at]).logits[0, -1].float()
        gap = abs(float(logits[a[at]] - logits[b[at]]))
        widest = max(widest, gap)
        if gap > TIE_TOLERANCE:
            raise SystemExit(f"G2: greedy outputs differ at a logit gap of {gap:.3f}")
    return identical, widest


def run(repetitions: int = 5, quick: bool = False, peak: float | None = None) -> list[Result]:
    if not torch.cuda.is_available():
        raise RuntimeError("benchmarks.gpu needs an NVIDIA GPU (torch.cuda.is_available())")
    sizes, device = QUICK if quick else FULL, "cuda"
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name, peak)
    model = build_model(device)
    parameters = parameter_count(model)
    vocab = model.config.vocab_size

    # G1: perplexity forward
    prompts, continuations = random_texts(sizes["texts"], vocab)
    scorer = PerplexityScorer(
        model, None, lambda p, c: p, device=device, batch_size=64, max_batch_tokens=16384
    )
    expected = loop_nll(model, device, prompts, continuations)
    got = [s.nll for s in scorer.score_ids(prompts, continuations)]
    worst = max(abs(g - e) / abs(e) for g, e in zip(got, expected, strict=True))
    if worst > NLL_TOLERANCE:
        raise SystemExit(f"G1: scorer and loop NLLs differ by {worst:.2e} (relative)")
    stats = scorer.stats
    slow, _ = repeat(partial(loop_nll, model, device, prompts, continuations), repetitions)
    fast, _ = repeat(partial(scorer.score_ids, prompts, continuations), repetitions)
    rate, flops = stats.tokens / fast.median, model_flops(parameters, stats.tokens) / fast.median
    share = f"{flops / (peak * 1e12):.0%} of the {peak:g} TFLOP/s" if peak else "unknown"
    g1 = Result(
        id="G1",
        title=f"perplexity forward, {len(prompts)} texts, {name}, bf16",
        baseline_label="model(labels=) one text at a time",
        ours_label="PerplexityScorer.score_ids",
        baseline=slow,
        ours=fast,
        ratio=slow.median / fast.median,
        goal=f"within {NLL_TOLERANCE:g} relative (bf16); measured",
        met=True,
        notes=[
            f"largest relative NLL difference {worst:.1e}; {parameters / 1e6:.0f}M parameters",
            f"tokens/s: loop {stats.tokens / slow.median:,.0f}, scorer {rate:,.0f}; "
            f"padding {stats.padding_share:.1%} in {stats.batches} batches",
            f"model FLOP/s {flops / 1e12:.0f} T; share of the bf16 peak: {share}",
        ],
    )

    # G2: greedy generation
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (sizes["prompts"], sizes["prompt_tokens"]), device=device)
    new = sizes["new_tokens"]
    batched = generate(model, ids, new, batched=True)
    single = generate(model, ids, new, batched=False)
    if batched.shape != (len(ids), ids.shape[1] + new) or batched.shape != single.shape:
        raise SystemExit(f"G2: unexpected output shapes {batched.shape} / {single.shape}")
    identical, widest = check_generation(model, batched, single)
    loop_time, _ = repeat(partial(generate, model, ids, new, False), repetitions)
    batch_time, _ = repeat(partial(generate, model, ids, new, True), repetitions)
    tokens = len(ids) * new
    g2 = Result(
        id="G2",
        title=f"greedy generation, {len(ids)} prompts x {new} new tokens, {name}, bf16",
        baseline_label="model.generate one prompt at a time",
        ours_label=f"model.generate, batch of {len(ids)}",
        baseline=loop_time,
        ours=batch_time,
        ratio=loop_time.median / batch_time.median,
        goal="same greedy outputs (up to bf16 ties); measured",
        met=True,
        notes=[
            f"{identical}/{len(ids)} sequences identical; the rest diverge at ties "
            f"(largest logit gap {widest:.3f} <= {TIE_TOLERANCE})",
            f"tokens/s: loop {tokens / loop_time.median:,.0f}, "
            f"batched {tokens / batch_time.median:,.0f}",
        ],
    )
    return [g1, g2]


def markdown(results: list[Result]) -> str:
    lines = ["| id | what | baseline | ours | ratio |", "|---|---|---|---|---|"]
    lines += [
        f"| {r.id} | {r.title} | {r.baseline_label}: {r.baseline.describe()} | "
        f"{r.ours_label}: {r.ours.describe()} | {r.ratio:.1f}x |"
        for r in results
    ]
    return "\n".join(lines + [f"- {r.id}: {note}" for r in results for note in r.notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA device here (torch.cuda.is_available() is False); skipped")
        return
    print(markdown(run(args.repetitions, args.quick, args.peak_tflops)), flush=True)


if __name__ == "__main__":
    main()
