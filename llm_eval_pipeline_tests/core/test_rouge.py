"""ROUGE equals the reference implementation, rouge-score, exactly."""

import json
import random
import subprocess
import sys

import pytest

from llm_eval_pipeline.core.metrics.rouge import rouge_scores, split_sentences
from llm_eval_pipeline.core.schema import ROUGE_TYPES

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "dog",
    "ran",
    "running",
    "runs",
    "quickly",
    "slowly",
    "over",
    "under",
    "river",
    "bank",
    "money",
    "paris",
    "france",
    "capital",
    "city",
    "is",
    "was",
    "were",
    "1989",
    "2,000",
    "co-operate",
    "don't",
    "e-mail",
    "naïve",
    "café",
]
EDGE_CASES = [
    ("", "reference text"),
    ("prediction text", ""),
    ("", ""),
    ("!!! ??? ...", "... ,,,"),
    ("Café naïve résumé — ünïcödé", "cafe naive resume unicode"),
    ("日本語のテキスト", "日本語"),
    ("line one\n\nline two\n", "line two\nline one"),
    ("the the the the", "the"),
    ("running runs ran", "run"),
    (" ".join(["long"] * 3000 + ["text"]), " ".join(["text"] * 500 + ["long"] * 10)),
    ("Sentence one. Sentence two!\nThree?", "Sentence two! Sentence one."),
]


def random_pairs(n: int, seed: int = 13) -> list[tuple[str, str]]:
    rng = random.Random(seed)

    def text() -> str:
        sentences = []
        for _ in range(rng.randint(1, 3)):
            sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 25))))
        return rng.choice([". ", "\n", " "]).join(sentences)

    return [(text(), text()) for _ in range(n)]


# rouge-score runs in a child process: it imports absl and nltk, whose import-time
# logging and stream set-up disturb pytest's output capture for the rest of the run.
REFERENCE = """
import json, sys
from rouge_score import rouge_scorer
job = json.load(sys.stdin)
scorer = rouge_scorer.RougeScorer(job["types"], use_stemmer=job["stemmer"])
out = []
for pred, refs in job["rows"]:
    scores = scorer.score_multi(refs, pred)
    out.append({t: [scores[t].fmeasure, scores[t].precision, scores[t].recall]
                for t in job["types"]})
json.dump(out, sys.stdout)
"""


def reference_scores_many(rows: list[tuple[str, list[str]]], stemmer: bool = True) -> list[dict]:
    """rouge-score's score_multi for every (prediction, references) row."""
    job = {"types": list(ROUGE_TYPES), "stemmer": stemmer, "rows": rows}
    done = subprocess.run(
        [sys.executable, "-c", REFERENCE],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("stemmer", [True, False])
def test_identical_to_rouge_score_on_generated_pairs_and_edge_cases(stemmer: bool) -> None:
    pairs = random_pairs(2000) + EDGE_CASES
    ours = rouge_scores([p for p, _ in pairs], [[r] for _, r in pairs], use_stemmer=stemmer)
    expected = reference_scores_many([(p, [r]) for p, r in pairs], stemmer)
    for i, (pred, ref) in enumerate(pairs):
        for rouge_type in ROUGE_TYPES:
            got = [
                ours[rouge_type][i],
                ours[f"{rouge_type}_precision"][i],
                ours[f"{rouge_type}_recall"][i],
            ]
            assert got == expected[i][rouge_type], (pred, ref, rouge_type)


def test_several_references_take_the_best_like_score_multi() -> None:
    pairs = random_pairs(300, seed=5)
    refs = [[pairs[i][1], pairs[(i + 1) % 300][1], pairs[(i + 7) % 300][0]] for i in range(300)]
    ours = rouge_scores([p for p, _ in pairs], refs)
    expected = reference_scores_many([(p, refs[i]) for i, (p, _) in enumerate(pairs)])
    for i in range(len(pairs)):
        assert [ours[t][i] for t in ROUGE_TYPES] == [expected[i][t][0] for t in ROUGE_TYPES]


def test_sentence_split_option_for_rouge_lsum() -> None:
    # the documented rule: ., ! or ?, closing quotes or brackets, then whitespace
    assert (
        split_sentences('He left. "Why?" she asked! Fine') == 'He left.\n"Why?"\nshe asked!\nFine'
    )
    pred = "The cat sat. The dog ran."
    ref = "The dog ran. The cat sat."
    plain = rouge_scores([pred], [[ref]])["rougeLsum"][0]
    split = rouge_scores([pred], [[ref]], split=True)["rougeLsum"][0]
    assert split == 1.0 and plain < 1.0
