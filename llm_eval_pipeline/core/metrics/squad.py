"""Exact match and token F1 as the SQuAD v1.1 official evaluation script defines them.

Source: the official SQuAD v1.1 evaluation (``evaluate-v1.1.py``, Rajpurkar et al. 2016).
An answer is normalised by lower-casing, removing ASCII punctuation
(``string.punctuation``), removing the articles ``a``, ``an``, ``the`` (whole words) and
collapsing whitespace; ``exact_match`` is 1.0 when the normalised prediction equals the
normalised reference; ``token_f1`` is the harmonic mean of precision and recall over the
multiset of whitespace tokens (0.0 when no token is shared, including when either side is
empty). Both take the maximum over the references.

:func:`squad_scores` computes both for a whole batch and gives the same floats, bit for
bit, as the per-pair functions: each distinct text is normalised once, and the shared
token count comes from set intersection (multiset counts only where a side repeats a
token).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
# str.translate deletes exactly the characters the official ''.join(...) filter drops
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_DROP_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


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


_ARTICLE_WORDS = frozenset(("a", "an", "the"))
_ASCII_LOWER_TABLE = bytes.maketrans(
    string.ascii_uppercase.encode(), string.ascii_lowercase.encode()
)
_ASCII_PUNCTUATION = string.punctuation.encode()


def _normalised_tokens(text: str) -> tuple[str, list[str]]:
    """``normalize_answer(text)`` and its tokens, by a faster route to the same result."""
    if text.isascii():  # one C pass lowers and deletes punctuation
        text = text.encode().translate(_ASCII_LOWER_TABLE, _ASCII_PUNCTUATION).decode()
    else:  # an ASCII byte is never part of a multi-byte UTF-8 sequence
        encoded = text.lower().encode("utf-8", "surrogatepass")
        text = encoded.translate(None, _ASCII_PUNCTUATION).decode("utf-8", "surrogatepass")
    tokens = text.split()
    if "".join(tokens).isalnum():
        # every non-space character is a word character (``\w`` is isalnum or "_", and
        # "_" is punctuation), so ``\b(a|an|the)\b`` can only match a whole token
        tokens = [token for token in tokens if token not in _ARTICLE_WORDS]
    else:
        tokens = _ARTICLES.sub(" ", text).split()
    return " ".join(tokens), tokens


# a reference: normalised text, tokens, distinct tokens, whether a token repeats
_Reference = tuple[str, list[str], frozenset[str], bool]


def _reference(text: str) -> _Reference:
    normalised, tokens = _normalised_tokens(text)
    distinct = frozenset(tokens)
    return normalised, tokens, distinct, len(distinct) != len(tokens)


def _f1(pred_tokens: list[str], reference: _Reference) -> float:
    """Token F1 of a prediction sharing at least one token with ``reference``."""
    _, ref_tokens, ref_set, ref_repeats = reference
    common = ref_set.intersection(pred_tokens)
    if ref_repeats:
        same = sum(min(pred_tokens.count(t), ref_tokens.count(t)) for t in common)
    else:  # each shared token counts once: min(count in prediction, 1)
        same = len(common)
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[list[float], list[float]]:
    """``(exact_match, token_f1)`` for each prediction, each the maximum over its row's
    references (at least one per row); equal to :func:`best_over_references` of
    :func:`exact_match` and :func:`token_f1` for every row."""
    seen_predictions: dict[str, tuple[str, list[str]]] = {}
    seen_references: dict[str, _Reference] = {}
    prediction_seen, reference_seen = seen_predictions.get, seen_references.get
    ems: list[float] = []
    f1s: list[float] = []
    for prediction, refs in zip(predictions, references, strict=True):
        if not refs:
            raise ValueError(f"row {len(ems)} has no reference")
        pred = prediction_seen(prediction)
        if pred is None:
            pred = seen_predictions[prediction] = _normalised_tokens(prediction)
        pred_text, pred_tokens = pred
        em = f1 = 0.0
        for text in refs:
            ref = reference_seen(text)
            if ref is None:
                ref = seen_references[text] = _reference(text)
            if pred_text == ref[0]:
                em = 1.0
                if pred_tokens:  # identical tokens: F1 = 2*1*1/(1+1) = 1.0, both at their max
                    f1 = 1.0
                    break
            elif pred_tokens and not ref[2].isdisjoint(pred_tokens):
                value = _f1(pred_tokens, ref)
                if value > f1:
                    f1 = value
        ems.append(em)
        f1s.append(f1)
    return ems, f1s
