"""Exact match and token F1 as the SQuAD v1.1 official evaluation script defines them.

Source: the official SQuAD v1.1 evaluation (``evaluate-v1.1.py``, Rajpurkar et al. 2016).
An answer is normalised by lower-casing, removing ASCII punctuation
(``string.punctuation``), removing the articles ``a``, ``an``, ``the`` (whole words) and
collapsing whitespace; ``exact_match`` is 1.0 when the normalised prediction equals the
normalised reference; ``token_f1`` is the harmonic mean of precision and recall over the
multiset of whitespace tokens (0.0 when no token is shared, including when either side is
empty). Both take the maximum over the references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_references(metric, prediction: str, references: Sequence[str]) -> float:
    return max(metric(prediction, reference) for reference in references)
