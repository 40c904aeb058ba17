"""Builds the two tiny demo models: GPT-2 architecture, a byte-level BPE tokenizer
trained on the demo dataset's text.

* ``tiny-random``: left at its seeded random initialisation (a model that knows nothing).
* ``tiny-qa``: trained for a few hundred steps on the demo examples, questions and
  summaries alike (loss on the reference tokens only), so that it answers some questions
  and writes summaries that share words with the references.

Deterministic (fixed seeds, a fixed thread count while training) and a minute or two on 2 CPU
cores. Nothing is downloaded; the weights are written under ``LLM_EVAL_HOME/models`` and
never committed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_eval_pipeline.core.models import DEFAULT_PROMPT_TEMPLATE, GenerationConfig, ModelSpec

RANDOM_MODEL = "tiny-random"
QA_MODEL = "tiny-qa"
DEMO_MODELS = (RANDOM_MODEL, QA_MODEL)
EOS = "<|endoftext|>"
PAD = "<pad>"
VOCAB_SIZE = 2048
CONTEXT = 512
TRAIN_STEPS = 450
BATCH = 16
LEARNING_RATE = 4e-3
SEED = 1234
MAX_NEW_TOKENS = 48
"""Room for a summary (the references run to about 40 tokens); answers stop at a newline
or the end-of-text token long before."""
TRAIN_THREADS = 2
"""A fixed thread count, whatever the machine: reductions are split the same way on every
build (two threads train about 1.5 times as fast as one here)."""
INFO_FILE = "demo_build.json"


@dataclass(frozen=True)
class DemoModel:
    name: str
    path: Path
    built: bool  # False when an earlier build was reused
    seconds: float


def demo_generation() -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS, stop=("\n",), prompt_template=DEFAULT_PROMPT_TEMPLATE
    )


def demo_specs(models_dir: Path) -> list[ModelSpec]:
    """Registry entries for the demo models; ``tiny-qa`` is the baseline."""
    return [
        ModelSpec(
            name=name,
            backend="transformers",
            options={"path": str(models_dir / name), "dtype": "float32", "batch_size": 16},
            generation=demo_generation(),
            baseline=name == QA_MODEL,
        )
        for name in DEMO_MODELS
    ]


def build_demo_models(
    models_dir: Path,
    dataset: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
    train_steps: int = TRAIN_STEPS,
    names: tuple[str, ...] = DEMO_MODELS,
) -> list[DemoModel]:
    """Build the models ``names`` (default: both) under ``models_dir`` unless they are
    already there (tests pass a small ``train_steps``)."""
    built = []
    records = [
        json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines() if line
    ]
    tokenizer = None
    for name in names:
        path = models_dir / name
        if (path / INFO_FILE).exists() and not force:
            built.append(DemoModel(name, path, False, 0.0))
            continue
        start = time.perf_counter()
        tokenizer = tokenizer or _train_tokenizer(records)
        model = _init_model(tokenizer)
        steps = 0
        if name == QA_MODEL:
            steps = _train(model, tokenizer, records, log, train_steps)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        seconds = time.perf_counter() - start
        info = {"name": name, "seed": SEED, "train_steps": steps, "seconds": round(seconds, 1)}
        (path / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        log(f"built {name} in {seconds:.0f}s ({steps} training steps) at {path}")
        built.append(DemoModel(name, path, True, seconds))
    return built


def _train_tokenizer(records: list[dict]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = []
    for r in records:
        texts.extend([r["prompt"], r.get("context") or "", *r["references"]])
    texts.append(DEFAULT_PROMPT_TEMPLATE)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=CONTEXT,
    )


def _init_model(tokenizer):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT,
        n_embd=128,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _answer_loss(model, input_ids, mask, labels):
    """The mean cross-entropy of the next token at the answer positions: what
    ``model(..., labels=labels).loss`` gives, with the vocabulary projection computed for
    those positions only (most of a step's work otherwise goes into projecting the
    prompt's positions, whose loss is ignored)."""
    import torch

    hidden = model.transformer(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    scored = targets != -100
    logits = model.lm_head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits, targets[scored])


def _train(model, tokenizer, records: list[dict], log: Callable[[str], None], steps: int) -> int:
    import torch

    generation = demo_generation()
    examples = []
    for r in records:
        prompt_ids = tokenizer(generation.render(r["prompt"], r.get("context")))["input_ids"]
        answer_ids = tokenizer(" " + r["references"][0])["input_ids"] + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[-CONTEXT:]
        labels = ([-100] * len(prompt_ids) + answer_ids)[-CONTEXT:]
        examples.append((ids, labels))

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    try:
        for step in range(steps):
            batch = rng.sample(examples, BATCH)
            width = max(len(ids) for ids, _ in batch)
            pad = tokenizer.pad_token_id
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
            loss = _answer_loss(model, input_ids, mask, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 100 == 0 or step == steps - 1:
                log(f"  {QA_MODEL} step {step + 1}/{steps}: loss {loss.item():.3f}")
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return steps
