"""Batched, padded and windowed perplexity agrees with a naive per-example computation."""

import math

import pandas as pd
import pytest
import torch

from llm_eval_pipeline.core.backends import load_backend
from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.perplexity import (
    PerplexityScorer,
    ScoringStats,
    join_continuation,
)
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.core.scoring import (
    NO_OWN_LOGPROBS,
    NO_REFERENCES,
    ScoringContext,
    score_batch,
)
from llm_eval_pipeline.demo.models import QA_MODEL

PROMPTS = [
    "Context: Water boils at 100 degrees.\nQuestion: When does water boil?\nAnswer:",
    "Question: What is the capital of France?\nAnswer:",
    "Summarize:",
    "Q:",
    "",
]
CONTINUATIONS = ["100 degrees", " Paris", "A long summary " * 12, "yes", "Hello there"]


def naive(model, tokenizer, prompt: str, continuation: str) -> tuple[float, int]:
    """Total NLL and token count with one model(input_ids, labels=...) call per example."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(join_continuation(prompt, continuation), add_special_tokens=False)[
        "input_ids"
    ]
    if not prompt_ids:
        prompt_ids = [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + cont_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + cont_ids])
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=labels).loss.item()
    return loss * len(cont_ids), len(cont_ids)


@pytest.fixture(scope="module")
def lm(tiny_specs):
    backend = load_backend(tiny_specs[QA_MODEL])
    return backend.model, backend.tokenizer, tiny_specs[QA_MODEL].generation.render


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_batched_equals_naive_within_1e4(lm, batch_size: int) -> None:
    model, tokenizer, render = lm
    scores = PerplexityScorer(model, tokenizer, render, batch_size=batch_size).score(
        PROMPTS, CONTINUATIONS
    )
    for prompt, continuation, score in zip(PROMPTS, CONTINUATIONS, scores, strict=True):
        nll, tokens = naive(model, tokenizer, prompt, continuation)
        assert score.tokens == tokens
        assert score.nll == pytest.approx(nll, rel=1e-4)
        assert score.perplexity == pytest.approx(math.exp(nll / tokens), rel=1e-4)
        assert score.bits_per_byte == pytest.approx(
            nll / (math.log(2) * len(continuation.encode("utf-8"))), rel=1e-4
        )


def test_sliding_window_scores_every_token_once(lm) -> None:
    model, tokenizer, render = lm
    prompt, continuation = "Question: Say it.\nAnswer:", " one two three four" * 20
    full = PerplexityScorer(model, tokenizer, render).score([prompt], [continuation])[0]
    # a context of 32 tokens forces several windows; a stride of 31 keeps 1 token of
    # overlap, so each window's first (unscorable) token was scored by the previous one
    windowed = PerplexityScorer(model, tokenizer, render, max_context=32, stride=24)
    score = windowed.score([prompt], [continuation])[0]
    assert score.tokens == full.tokens
    assert math.isfinite(score.nll) and score.nll > 0
    # less context per token than the full pass, so not identical, but the same scale
    assert 0.5 < score.nll / full.nll < 2.0
    one_window = PerplexityScorer(model, tokenizer, render, max_context=1024, stride=512)
    assert one_window.score([prompt], [continuation])[0].nll == pytest.approx(full.nll, rel=1e-4)


def test_empty_continuation_has_no_score(lm) -> None:
    model, tokenizer, render = lm
    assert PerplexityScorer(model, tokenizer, render).score(["Q:"], [""]) == [None]
    with pytest.raises(ValueError, match="stride"):
        PerplexityScorer(model, tokenizer, render, max_context=16, stride=16)


def test_own_logprobs_give_output_perplexity_before_the_scorer(lm) -> None:
    model, tokenizer, render = lm
    frame = pd.DataFrame(
        {
            Col.EXAMPLE_ID: ["own", "scored", "none"],
            Col.PROMPT: ["Q: capital of France?", "Q: capital of Italy?", "Q: largest planet?"],
            Col.CONTEXT: [None, None, None],
            Col.REFERENCES: [["Paris"], ["Rome"], []],
            Col.OUTPUT: [" Paris", " Rome", " Jupiter"],
            Col.OUTPUT_LOGPROB: [-3.0, None, None],
            Col.OUTPUT_LOGPROB_TOKENS: pd.array([2, None, None], "Int64"),
        }
    )
    config = MetricConfig(groups=("perplexity",))
    scorer = PerplexityScorer(model, tokenizer, render)
    with_scorer = score_batch(frame, config, ScoringContext(perplexity=scorer))
    own, scored, _ = with_scorer["output_perplexity"]
    assert own == pytest.approx(math.exp(1.5))
    (expected,) = scorer.score([render("Q: capital of Italy?", None)], [" Rome"])
    assert scored == pytest.approx(expected.perplexity)
    assert not math.isnan(with_scorer["reference_perplexity"][0])
    assert with_scorer["metric_notes"][2] == {"perplexity": NO_REFERENCES}

    remote = score_batch(frame, config, ScoringContext(perplexity_note="no local model"))
    assert remote["output_perplexity"][0] == pytest.approx(math.exp(1.5))
    assert remote["reference_perplexity"].isna().all()
    assert remote["metric_notes"][0] == {"perplexity": "no local model"}
    assert remote["metric_notes"][1] == {"perplexity": f"no local model; {NO_OWN_LOGPROBS}"}


def test_stats_count_the_tokens_and_padding_of_the_last_call(lm) -> None:
    model, tokenizer, render = lm
    prompts, continuations = ["Q:", "Q:", "Question: why?\nAnswer:"], ["a", "b c d e f", ""]
    scorer = PerplexityScorer(model, tokenizer, render, batch_size=2)
    assert scorer.stats == ScoringStats()
    scorer.score(prompts, continuations)
    lengths = [
        len(tokenizer(p + join_continuation(p, c), add_special_tokens=False)["input_ids"])
        for p, c in zip(prompts[:2], continuations[:2], strict=True)
    ]
    # both scored rows in one batch, the shorter padded to the longer; the empty one skipped
    assert scorer.stats == ScoringStats(
        tokens=sum(lengths), padded_tokens=max(lengths) - min(lengths), batches=1
    )
    assert scorer.stats.padding_share == pytest.approx(
        (max(lengths) - min(lengths)) / (2 * max(lengths))
    )
    scorer.score(["Q:"], [""])
    assert scorer.stats == ScoringStats() and scorer.stats.padding_share == 0.0


def test_token_budget_limits_batches_without_changing_scores(lm) -> None:
    model, tokenizer, render = lm
    prompts, continuations = PROMPTS * 3, [c + " more" * i for i, c in enumerate(CONTINUATIONS * 3)]
    plain = PerplexityScorer(model, tokenizer, render, batch_size=100)
    expected = plain.score(prompts, continuations)
    assert plain.stats.batches == 1
    budget = PerplexityScorer(model, tokenizer, render, batch_size=100, max_batch_tokens=64)
    got = budget.score(prompts, continuations)
    assert budget.stats.batches > 1 and budget.stats.tokens == plain.stats.tokens
    assert budget.stats.padded_tokens < plain.stats.padded_tokens
    for a, b in zip(got, expected, strict=True):
        assert a.tokens == b.tokens and a.nll == pytest.approx(b.nll, rel=1e-5)


def test_token_ids_score_like_text_without_a_tokenizer(lm) -> None:
    model, tokenizer, render = lm
    (text,) = PerplexityScorer(model, tokenizer, render).score(["Q: capital?"], [" Paris"])
    prompt_ids = tokenizer("Q: capital?", add_special_tokens=False)["input_ids"]
    cont_ids = tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    scorer = PerplexityScorer(model, None, render)
    ids, empty = scorer.score_ids([prompt_ids, prompt_ids], [cont_ids, []])
    assert empty is None
    assert (ids.tokens, ids.bytes) == (text.tokens, 0) and math.isnan(ids.bits_per_byte)
    assert ids.nll == pytest.approx(text.nll, rel=1e-5)
    # an empty prompt starts from the model's BOS/EOS id, as with a tokenizer
    (no_prompt,) = scorer.score_ids([[]], [cont_ids])
    assert no_prompt.nll == pytest.approx(naive(model, tokenizer, "", " Paris")[0], rel=1e-4)
