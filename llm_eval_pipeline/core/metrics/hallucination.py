"""Hallucination index: how much of an output the evidence does not support.

Evidence is the prompt, the context and the references of the example. The index, in
[0, 1] (higher = more fabricated content), is the weighted mean of the components that
can be computed (weights in ``MetricConfig.hallucination_weights``):

``unsupported_fact_share``
    Facts are the numbers (thousands separators dropped, so "1,440" = "1440"; number words
    read as digits, so "twelve" = "12") and the capitalised non-stopwords (names, places,
    months) of the output that the prompt does not already hold. Share of them the
    evidence does not contain (names compared stemmed, lower-cased, and supported by a
    word they share a prefix of 5 letters or more with, so "Ethiopian" by "Ethiopia");
    0.0 when none.
``unsupported_content_share``
    Each output sentence is aligned with the evidence sentence (of the context, or a
    reference) sharing most word stems with it. Share of the output's content words
    (lower-cased, stopwords removed, Porter-stemmed) found neither in its aligned sentence
    nor in the prompt or references: support is local, so words that occur elsewhere in
    the passage but in another relation do not count as support.
``unsupported_answer_share``
    1 - the recall of the best reference's content words in the output (see
    ``reference_token_recall``); only for examples with references. An output that
    answers with something other than the reference states an unsupported answer.
``contradiction``
    1.0 when an output sentence contradicts its aligned evidence sentence: an unsupported
    word is the antonym of a word there or in a reference ("larger" where the passage
    says "smaller"; a fixed list of common antonyms), the sentence negates a word the
    evidence affirms or affirms one it negates ("spiders are not arachnids" against
    "spiders are arachnids rather than insects"; negations of time such as "has not
    erupted since 1707" deny nothing), or it reverses a "from A to B" of the evidence.
``unbound_relation`` (absent when nothing can be checked)
    Relation errors built from supported words ("X directed Y" where the passage says X
    starred in Y and Z directed it). Evidence and output are cut into clauses (at
    punctuation, relative pronouns and conjunctions); a clause's anchors are its names and
    numbers (a clause with none but a pronoun takes the question's; an output clause opened
    by a relative pronoun adds the previous clause's). Each content word of
    an output clause that the evidence holds (other than the anchors) is bound when some
    evidence clause holding the word also holds all the output clause's anchors that the
    evidence knows, unless every such clause puts two of the anchors on the other
    sides of the word than the output does (roles swapped: "the moth lays its
    eggs in the wasp"; a "by" just after the word reads as the passive voice); the
    component is the share unbound. A short answer (``SHORT_ANSWER_WORDS`` words or
    fewer) that is a name rather than a clause (a clause: two of the evidence's anchors
    and a word between them, "Scribe is a fork of Wrenpad") is checked the other way
    round: it is unbound (1.0) when none of the question's relation words (its content
    words other than names and numbers) meets the answer's anchors (or its content words,
    when it names nothing) in one evidence clause, bound (0.0) when one does. One is
    enough: a multi-hop question ("where was the star of F born?") describes the bridge
    entity with words that meet the bridge, not the answer. Absent when the answer names
    only what the question names (a comparison's candidate: ``wrong_comparison`` judges it).
``wrong_comparison`` (only for comparison questions the evidence decides)
    For a question "which is longer, A or B?" (a comparative or superlative and two
    candidates before the question mark), the number the evidence gives each candidate
    (a year for "first", "earlier", "more recently" and the like; another number for
    "longer", "more", "fewer" and the like), in the sentence naming it or the one after;
    1.0 when the output's first sentence names the candidate those numbers rule out
    (alone, or before the other), 0.0 when it names the other; absent when the question
    is no such comparison or the evidence does not decide it.
``nli_contradiction`` (only when ``MetricConfig.nli_model`` is set)
    The probability of the contradiction (or hallucination) label of a local
    sequence-classification model given premise = evidence, hypothesis = output.

Beside the index, ``hallucination_probability`` reads the lexical components through the
shipped logistic calibration (``calibration.py``: fitted on the project's labelled
data, with and without references) and ``hallucinated`` flags it at the calibration's
threshold.

The components follow the entity/number overlap and unigram support checks used for
factual consistency in summarisation (e.g. Nan et al. 2021, "Entity-level Factual
Consistency of Abstractive Text Summarization"), sentence-level alignment as in SummaC
(Laban et al. 2022), and NLI-based consistency (SummaC; Vectara's HHEM). A missing output
has no index; an empty one states nothing and scores 0.0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from llm_eval_pipeline.core.metrics.calibration import combine, shipped
from llm_eval_pipeline.core.metrics.rouge import split_sentences
from llm_eval_pipeline.core.metrics.spec import LOWER, UNIT, MetricSpec

GROUP = "hallucination"
SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("hallucination_index", GROUP, LOWER, UNIT,
               "weighted mean of the components below (higher: more fabricated)"),
    MetricSpec("unsupported_fact_share", GROUP, LOWER, UNIT,
               "share of the answer's numbers and names the evidence does not hold"),
    MetricSpec("unsupported_content_share", GROUP, LOWER, UNIT,
               "share of content words its aligned evidence sentence does not hold"),
    MetricSpec("unsupported_answer_share", GROUP, LOWER, UNIT,
               "1 - recall of the best reference's content words"),
    MetricSpec("contradiction", GROUP, LOWER, UNIT,
               "1.0 when a sentence contradicts its aligned evidence (antonym, negation)"),
    MetricSpec("unbound_relation", GROUP, LOWER, UNIT,
               "share of relation words whose evidence clauses hold none of the answer's "
               "names together"),
    MetricSpec("wrong_comparison", GROUP, LOWER, UNIT,
               "1.0 when a comparison question is answered with the candidate the "
               "evidence's numbers rule out"),
    MetricSpec("nli_contradiction", GROUP, LOWER, UNIT,
               "contradiction probability of a local NLI model, premise = evidence"),
    MetricSpec("hallucination_probability", GROUP, LOWER, UNIT,
               "calibrated probability that the answer is fabricated (core.metrics.calibration)"),
    MetricSpec("hallucinated", GROUP, LOWER, UNIT,
               "1.0 when hallucination_probability reaches the shipped threshold; its mean "
               "is the share of answers flagged"),
)  # fmt: skip

INDEX = SPECS[0].name
PROBABILITY, FLAG = SPECS[-2].name, SPECS[-1].name

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself nor of off on once only or other our ours ourselves
    out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves one ones known
    called named many much may might must shall per via each every
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "cannot",
        "without",
        "n't",
    }
)
_UNIT_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
_UNITS = {w: i for i, w in enumerate(_UNIT_WORDS.split())}
_TENS = {
    w: 10 * i
    for i, w in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2
    )
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = re.compile(r"\b(?:" + "|".join([*_UNITS, *_TENS, *_SCALES]) + r")\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d[\d,]*(?:\.\d+)?")


@cache
def _stemmer():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer().stem(word.lower().replace("’", "'").strip("'-"))


@lru_cache(maxsize=50_000)
def _words_to_numbers(text: str) -> str:
    """Rewrite runs of number words as digits ("one hundred twenty" -> "120")."""
    if not _NUMBER_WORD.search(text):
        return text
    tokens = re.split(r"(\s+|-)", text)
    out: list[str] = []
    total, current, in_number = 0, 0, False
    pending_sep: list[str] = []
    run: list[str] = []

    def flush() -> None:
        nonlocal total, current, in_number
        if in_number:
            # a lone "one" is usually a pronoun ("no one", "one of them"), not a count
            lone_one = len(run) == 1 and run[0].lower().strip(".,;:!?") == "one"
            out.append(run[0].rstrip(".,;:!?") if lone_one else str(total + current))
        total, current, in_number = 0, 0, False
        run.clear()

    for token in tokens:
        word = token.lower().strip(".,;:!?")
        if word in _UNITS or word in _TENS or (word in _SCALES and in_number):
            if word in _UNITS:
                current += _UNITS[word]
            elif word in _TENS:
                current += _TENS[word]
            else:
                scale = _SCALES[word]
                if scale == 100:
                    current *= 100
                else:
                    total += current * scale
                    current = 0
            in_number = True
            run.append(token)
            pending_sep = []
            trailing = token[len(token.rstrip(".,;:!?")) :]
            if trailing:
                flush()
                out.append(trailing)
            continue
        if in_number and (token.isspace() or token == "-" or word == "and"):
            pending_sep.append(token)
            continue
        flush()
        out.extend(pending_sep)
        pending_sep = []
        out.append(token)
    flush()
    out.extend(pending_sep)
    return "".join(out)


def _numbers(text: str) -> set[str]:
    return {
        m.replace(",", "").rstrip("0").rstrip(".") if "." in m else m.replace(",", "")
        for m in _NUMBER.findall(_words_to_numbers(text))
    }


def _names(text: str) -> set[str]:
    return {
        _stem(w)
        for w in _WORD.findall(text)
        if w[0].isupper()
        and w.lower() not in STOPWORDS
        and w.lower() not in _UNITS
        and w.lower() not in NEGATIONS
    }


def _content_stems(text: str) -> set[str]:
    return {
        _stem(w)
        for w in _WORD.findall(_words_to_numbers(text))
        if not w[0].isdigit()
        and w.lower() not in STOPWORDS
        and w.lower() not in NEGATIONS
        and len(w) > 1
    }


ANTONYMS: tuple[tuple[str, str], ...] = (
    ("larger", "smaller"),
    ("bigger", "smaller"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("longer", "shorter"),
    ("longest", "shortest"),
    ("long", "short"),
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("high", "low"),
    ("hot", "cold"),
    ("hotter", "colder"),
    ("warmer", "colder"),
    ("heavier", "lighter"),
    ("denser", "less"),
    ("north", "south"),
    ("east", "west"),
    ("before", "after"),
    ("first", "last"),
    ("increase", "decrease"),
    ("rise", "fall"),
    ("above", "below"),
    ("inside", "outside"),
    ("fast", "slow"),
    ("faster", "slower"),
    ("absorb", "reflect"),
    ("older", "younger"),
    ("oldest", "youngest"),
    ("early", "late"),
    ("earlier", "later"),
    ("always", "never"),
    ("true", "false"),
    ("wet", "dry"),
    ("strong", "weak"),
    ("hard", "soft"),
    ("harder", "softer"),
    ("hardest", "softest"),
    ("open", "closed"),
    ("gain", "lose"),
    ("left", "right"),
    ("top", "bottom"),
    ("inner", "outer"),
    ("maximum", "minimum"),
    ("positive", "negative"),
    ("same", "different"),
    ("deep", "shallow"),
    ("deeper", "shallower"),
    ("wide", "narrow"),
    ("thick", "thin"),
    ("light", "dark"),
)


@cache
def _antonyms() -> dict[str, frozenset[str]]:
    pairs: dict[str, set[str]] = {}
    for a, b in ANTONYMS:
        pairs.setdefault(_stem(a), set()).add(_stem(b))
        pairs.setdefault(_stem(b), set()).add(_stem(a))
    return {k: frozenset(v) for k, v in pairs.items()}


def _all_stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(_words_to_numbers(text).replace(",", ""))}


def _sentences(text: str) -> list[str]:
    return [s for s in split_sentences(text).split("\n") if s.strip()]


_CLAUSE = re.compile(r"[,;:()\u2013\u2014]| - ")
_NEGATION_MARKERS = NEGATIONS - {"nobody", "nothing", "none", "neither", "nor"}
_TEMPORAL = frozenset({"since", "until", "till", "yet"})
_DIRECTION = re.compile(r"\bfrom ([a-z]+) to ([a-z]+)\b")


@dataclass(frozen=True)
class Polarity:
    """A sentence's content stems split into those it affirms and those it negates: the
    first content word after "not", "never", "no", "cannot", "without", "...n't",
    "rather than" or "instead of", within the same clause, is negated. Negations of time
    ("has not erupted since 1707", "did not open until 1890") and "not only" assert the
    event rather than deny it, so they negate nothing."""

    affirmed: frozenset[str]
    negated: frozenset[str]

    @classmethod
    def of(cls, sentence: str) -> Polarity:
        affirmed: set[str] = set()
        negated: set[str] = set()
        for clause in _CLAUSE.split(_words_to_numbers(sentence).lower()):
            words = _WORD.findall(clause)
            if not words:
                continue
            temporal = bool(_TEMPORAL & set(words))
            pending = False
            for word, following in zip(words, [*words[1:], ""], strict=True):
                if (
                    word in _NEGATION_MARKERS
                    or word.endswith(("n't", "n’t"))
                    or (word, following) in {("rather", "than"), ("instead", "of")}
                ):
                    pending = not temporal and following not in {"only", "just"}
                elif word not in STOPWORDS and not word[0].isdigit() and len(word) > 1:
                    (negated if pending else affirmed).add(_stem(word))
                    pending = False
        return cls(frozenset(affirmed - negated), frozenset(negated))

    def conflicts(self, other: Polarity) -> bool:
        """Whether one negates a word the other affirms."""
        return bool(self.negated & other.affirmed or self.affirmed & other.negated)


def _directions(text: str) -> set[tuple[str, str]]:
    """The ("west", "east") pairs of "from west to east" phrases."""
    return set(_DIRECTION.findall(text.lower()))


def _prefixes(stems: set[str]) -> frozenset[str]:
    """Prefixes (5 characters or more) of ``stems``, so that "Ethiopian" finds support in
    "Ethiopia" and "Parisian" in "Paris"."""
    return frozenset(s[:n] for s in stems for n in range(5, len(s) + 1))


def _supported(stem: str, words: set[str], prefixes: frozenset[str]) -> bool:
    return stem in words or stem in prefixes or any(stem[:n] in words for n in range(5, len(stem)))


@dataclass(frozen=True)
class Evidence:
    """What the evidence holds: its words and numbers, its sentences' stems, and what
    the prompt alone holds (repeating the question's own words is no claim)."""

    numbers: set[str]
    words: set[str]
    word_prefixes: frozenset[str]
    sentence_stems: list[set[str]]
    sentence_polarity: list[Polarity]
    directions: set[tuple[str, str]]
    prompt_numbers: set[str]
    prompt_words: set[str]
    reference_words: set[str]

    @classmethod
    def of(cls, prompt: str, context: str | None, references: Sequence[str]) -> Evidence:
        joined = "\n".join([prompt, context or "", *references])
        sentences = [*_sentences(context or ""), *references]
        words = _all_stems(joined)
        return cls(
            numbers=_numbers(joined),
            words=words,
            word_prefixes=_prefixes(words),
            sentence_stems=[_all_stems(s) for s in sentences],
            sentence_polarity=[Polarity.of(s) for s in sentences],
            directions=_directions(joined),
            prompt_numbers=_numbers(prompt),
            prompt_words=_all_stems(prompt),
            reference_words=set().union(*(_all_stems(r) for r in references)),
        )


_DERIVING = frozenset(
    {
        "than", "times", "apart", "after", "later", "earlier", "before", "difference",
        "more", "fewer", "less", "older", "younger", "longer", "shorter", "twice", "half",
    }
)  # fmt: skip
MAX_DERIVING_NUMBERS = 30
"""Evidence numbers whose differences and ratios are tried (pairs grow as the square)."""


def _derived(number: str, output: str, evidence_numbers: set[str]) -> bool:
    """Whether ``number`` is the difference or the (rounded, at least 2) ratio of two
    evidence numbers in an output that compares ("eighteen years older than", "three
    times deeper"): a claim computed from the evidence, not one added to it."""
    if not {w.lower() for w in _WORD.findall(output)} & _DERIVING:
        return False
    target = float(number)
    values = sorted({float(n) for n in evidence_numbers})[:MAX_DERIVING_NUMBERS]
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            if b - a == target or (a > 0 and b / a >= 2 and round(b / a) == target):
                return True
    return False


def fact_share(output: str, evidence: Evidence) -> float:
    numbers = _numbers(output) - evidence.prompt_numbers
    names = _names(output) - evidence.prompt_words
    if not numbers and not names:
        return 0.0
    missing = {n for n in numbers - evidence.numbers if not _derived(n, output, evidence.numbers)}
    unsupported = len(missing) + sum(
        not _supported(name, evidence.words, evidence.word_prefixes) for name in names
    )
    return unsupported / (len(numbers) + len(names))


def contradicts(sentence: str, missing: set[str], best: int | None, evidence: Evidence) -> bool:
    """Whether an output sentence contradicts the evidence: an unsupported word is the
    antonym of a word of its aligned evidence sentence or of a reference; it negates a
    word its aligned sentence affirms, or the reverse; or it reverses a "from A to B"."""
    aligned = evidence.sentence_stems[best] if best is not None else set()
    antonyms = _antonyms()
    if any(antonyms.get(w, frozenset()) & (aligned | evidence.reference_words) for w in missing):
        return True
    if best is not None and Polarity.of(sentence).conflicts(evidence.sentence_polarity[best]):
        return True
    return any(
        (b, a) in evidence.directions and (a, b) not in evidence.directions
        for a, b in _directions(sentence)
    )


def content_support(output: str, evidence: Evidence) -> tuple[float, float]:
    """(unsupported content share, contradiction) of ``output``, by local alignment."""
    total, unsupported, contradiction = 0, 0, 0.0
    for sentence in _sentences(output):
        stems = _content_stems(sentence)
        if not stems:
            continue
        best = max(
            range(len(evidence.sentence_stems)),
            key=lambda i: len(stems & evidence.sentence_stems[i]),
            default=None,
        )
        aligned = evidence.sentence_stems[best] if best is not None else set()
        supported = aligned | evidence.prompt_words | evidence.reference_words
        prefixes = _prefixes(supported)
        missing = {s for s in stems - supported if not _supported(s, supported, prefixes)}
        total += len(stems)
        unsupported += len(missing)
        if contradicts(sentence, missing, best, evidence):
            contradiction = 1.0
    return (unsupported / total if total else 0.0), contradiction


_SENSE_WORDS = {
    # "early"/"late": compare years; "big"/"small": compare other numbers
    "early": "first earlier earliest older oldest before sooner",
    "late": "later latest last newer newest younger youngest recently recent",
    "big": "longer longest taller tallest larger largest bigger biggest higher highest more "
    "most heavier heaviest deeper deepest wider widest faster fastest greater greatest "
    "farther further hotter warmer stronger",
    "small": "shorter shortest smaller smallest lower lowest fewer fewest less least lighter "
    "lightest shallower narrower slower slowest closer nearer cooler colder weaker cheaper",
}
_SENSES = {sense: frozenset(words.split()) for sense, words in _SENSE_WORDS.items()}
_CANDIDATE = (
    r"((?:the\s+)?[A-Z0-9][\w'’\-]*"
    r"(?:\s+(?:(?:of|the|for|and|in|on|de|a|an|&)\s+){0,2}[A-Z0-9][\w'’\-]*)*)"
)
"""A name as a comparison question gives it: capitalised words, with up to two short
lower-case words between them ("First for Women", "Tower of the Winds")."""
_EITHER = re.compile(_CANDIDATE + r"\s+or\s+" + _CANDIDATE + r"\s*\?")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")


def _name_stems(name: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(name) if w.lower() not in STOPWORDS]


def _names_in(text: str, stems: list[str]) -> bool:
    found = _all_stems(text)
    return bool(stems) and all(s in found for s in stems)


def _name_position(sentence: str, stems: list[str]) -> int | None:
    """Where the name ``stems`` starts in ``sentence`` (in words), None when absent."""
    order = [_stem(w) for w in _WORD.findall(sentence)]
    return order.index(stems[0]) if _names_in(sentence, stems) else None


def _candidate_value(sentences: list[str], own: list[str], other: list[str], years: bool):
    """The first year (or other number) in a sentence naming the candidate, or in the
    sentence after it unless that one names the other candidate. The sentences naming it
    are tried by where the name stands, the earliest first: the sentence that is about
    the candidate ("B was established in 1856") before one that mentions it ("It merged
    with B in 2001")."""
    positions = [(_name_position(s, own), i) for i, s in enumerate(sentences)]
    for _, i in sorted((p, i) for p, i in positions if p is not None):
        sentence = sentences[i]
        span = [sentence]
        if i + 1 < len(sentences) and not _names_in(sentences[i + 1], other):
            span.append(sentences[i + 1])
        for text in span:
            text = _words_to_numbers(text)
            if years:
                found = _YEAR.findall(text)
            else:
                found = [n for n in _NUMBER.findall(text) if not _YEAR.fullmatch(n)]
            if found:
                return float(found[0].replace(",", ""))
    return None


def comparison_verdict(output: str, prompt: str, context: str | None) -> float | None:
    """``wrong_comparison`` of one output (see the module docstring)."""
    match = _EITHER.search(prompt)
    if match is None:
        return None
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    sense = next((sense for sense, keys in _SENSES.items() if words & keys), None)
    if sense is None:
        return None
    a, b = (_name_stems(match.group(i)) for i in (1, 2))
    sentences = _sentences(context or "")
    years = sense in ("early", "late")
    value_a = _candidate_value(sentences, a, b, years)
    value_b = _candidate_value(sentences, b, a, years)
    if value_a is None or value_b is None or value_a == value_b:
        return None
    a_wins = (value_a < value_b) == (sense in ("early", "small"))
    right, wrong = (a, b) if a_wins else (b, a)
    answer = (_sentences(output) or [output])[0]
    names_right, names_wrong = _names_in(answer, right), _names_in(answer, wrong)
    if names_right != names_wrong:
        return 1.0 if names_wrong else 0.0
    if not names_right:
        return None
    order = [_stem(w) for w in _WORD.findall(answer)]
    return 1.0 if order.index(wrong[0]) < order.index(right[0]) else 0.0


SHORT_ANSWER_WORDS = 5
PASSIVE_BY_WITHIN = 2
"""A "by" this many words after a relation word or fewer reads it as passive ("was
directed by X", "was first synthesised by X"); one further on is another phrase
("forked from Scribe in 2012 by volunteers")."""
_CLAUSE_BREAK = re.compile(
    r"([,;:()]|\s[-\u2013\u2014]\s|"
    r"\b(?:that|which|who|whom|whose|where|while|and|but|after|before|when|whereas)\b)",
    re.IGNORECASE,
)
_RELATIVE = frozenset({"that", "which", "who", "whom", "whose"})
_PRONOUNS = frozenset({"she", "he", "it", "they", "its", "her", "his", "their"})


def _anchors(text: str) -> set[str]:
    """What a clause is about: its names (as ``unsupported_fact_share`` reads them) and
    its numbers."""
    return _names(text) | _numbers(text)


def _clauses(text: str) -> list[tuple[bool, str]]:
    """The clauses of a sentence, each with whether a relative pronoun opens it."""
    parts = _CLAUSE_BREAK.split(text)
    out, relative = [], False
    for i, part in enumerate(parts):
        if i % 2:  # a delimiter
            relative = relative or part.strip().lower() in _RELATIVE
        elif part.strip() and _WORD.search(part):
            out.append((relative, part))
            relative = False
    return out


@dataclass(frozen=True)
class _Clause:
    """A clause's anchors, content stems, and the stems of its words in order."""

    anchors: frozenset[str]
    stems: frozenset[str]
    order: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> _Clause:
        return cls(
            frozenset(_anchors(text)),
            frozenset(_content_stems(text)),
            tuple(_stem(w) for w in _WORD.findall(_words_to_numbers(text))),
        )

    def sides(self, word: str, anchors: set[str]) -> dict[str, bool] | None:
        """For each anchor found here, whether it comes after ``word``, read in the active
        voice (a "by" after the word swaps the sides: "Y was directed by X"); None when
        the word is not here."""
        if word not in self.order:
            return None
        at = self.order.index(word)
        passive = "by" in self.order[at + 1 : at + 1 + PASSIVE_BY_WITHIN]
        return {a: (self.order.index(a) > at) != passive for a in anchors if a in self.order}


def _reversed(output: _Clause, word: str, anchors: set[str], holders: list[_Clause]) -> bool:
    """Whether every evidence clause holding ``word`` with ``anchors`` puts two of the
    anchors on the other sides of it than the output does ("the moth lays its eggs in
    the skink" where the evidence says "the skink lays its eggs in the moth")."""
    mine = output.sides(word, anchors)
    if not mine or len(set(mine.values())) < 2:
        return False
    for clause in holders:
        theirs = clause.sides(word, anchors) or {}
        shared = [a for a in mine if a in theirs]
        if not any(mine[a] != theirs[a] for a in shared) or len(shared) < 2:
            return False
        if all(mine[a] == theirs[a] for a in shared):
            return False
    return True


@lru_cache(maxsize=4096)
def _evidence_clauses(context: str) -> tuple[_Clause, ...]:
    """Each clause of the evidence (cached: the answers of one passage share it)."""
    return tuple(
        _Clause.of(clause) for sentence in _sentences(context) for _, clause in _clauses(sentence)
    )


def unbound_relation(output: str, prompt: str, context: str | None) -> float | None:
    """``unbound_relation`` of one output (see the module docstring)."""
    evidence = _evidence_clauses(context or "")
    if not evidence:
        return None
    known = set().union(*(c.anchors for c in evidence))
    named = _anchors(output) & known
    relates = len(named) >= 2 and bool(_content_stems(output) - _anchors(output))
    if len(output.split()) <= SHORT_ANSWER_WORDS and not relates:
        anchors = _anchors(output) & known or {
            s for s in _content_stems(output) if any(s in c.stems for c in evidence)
        }
        relation = {
            w
            for w in _content_stems(prompt) - anchors - _anchors(prompt)
            if any(w in c.stems for c in evidence)
        }
        if not anchors or not relation or anchors <= _anchors(prompt):
            return None
        bound = any(
            anchors <= c.anchors | c.stems for word in relation for c in evidence if word in c.stems
        )
        return 0.0 if bound else 1.0
    question_anchors = _anchors(prompt)
    checked = unbound = 0
    for sentence in _sentences(output):
        previous: set[str] = set()
        for relative, text in _clauses(sentence):
            anchors = _anchors(text)
            if not anchors and {w.lower() for w in _WORD.findall(text)} & _PRONOUNS:
                anchors = set(question_anchors)
            if relative:  # "X, who directed Y": the clause is about X too
                anchors |= previous
            previous = anchors
            anchors = anchors & known
            if not anchors:
                continue
            clause = _Clause.of(text)
            for word in clause.stems - anchors:
                holders = [c for c in evidence if word in c.stems]
                if holders:
                    checked += 1
                    bound = [c for c in holders if anchors <= c.anchors]
                    unbound += not bound or _reversed(clause, word, anchors, bound)
    return unbound / checked if checked else None


def reference_recall(output: str, references: Sequence[str]) -> float:
    """Share of a reference's content words (stemmed, numbers normalised; all its words
    when it has no content word) found in ``output``; max over references."""
    output_stems = _all_stems(output)
    best = 0.0
    for reference in references:
        words = [w for w in _WORD.findall(_words_to_numbers(reference).replace(",", ""))]
        stems = [_stem(w) for w in words if w.lower() not in STOPWORDS] or [_stem(w) for w in words]
        if stems:
            best = max(best, sum(s in output_stems for s in stems) / len(stems))
    return best


def hallucination_components(
    output: str, prompt: str, context: str | None, references: Sequence[str]
) -> dict[str, float | None]:
    if not _WORD.search(output):  # an empty output states nothing
        return {
            "unsupported_fact_share": 0.0,
            "unsupported_content_share": 0.0,
            "unsupported_answer_share": 0.0 if references else None,
            "contradiction": 0.0,
            "unbound_relation": None,
            "wrong_comparison": None,
        }
    evidence = Evidence.of(prompt, context, references)
    content, contradiction = content_support(output, evidence)
    return {
        "unsupported_fact_share": fact_share(output, evidence),
        "unsupported_content_share": content,
        "unsupported_answer_share": 1.0 - reference_recall(output, references)
        if references
        else None,
        "contradiction": contradiction,
        "unbound_relation": unbound_relation(output, prompt, context),
        "wrong_comparison": comparison_verdict(output, prompt, context),
    }


def nli_premise(prompt: str, context: str | None, references: Sequence[str]) -> str:
    """The evidence an output is checked against, as one NLI premise: the prompt (it may
    state facts, and a question's own words support an answer that repeats them), the
    context, then the references, one per line; empty parts left out."""
    return "\n".join(part for part in (prompt, context or "", *references) if part)


def hallucination_scores(
    outputs: Sequence[str],
    components: Sequence[Mapping[str, float | None]],
    prompts: Sequence[str],
    contexts: Sequence[str | None],
    references: Sequence[Sequence[str]],
    weights: Mapping[str, float],
    nli: NliScorer | None = None,
) -> dict[str, list[float | None]]:
    """The index, its components and the calibrated probability for each output, from
    its :func:`hallucination_components` (computed once by the caller) and the NLI model,
    whose premise is the whole evidence: prompt, context and references."""
    contradiction_p: list[float | None] = [None] * len(outputs)
    if nli is not None:
        premises = [
            nli_premise(p, c, r) for p, c, r in zip(prompts, contexts, references, strict=True)
        ]
        contradiction_p = list(nli.contradiction(premises, outputs))
    calibration = shipped()
    out: dict[str, list[float | None]] = {spec.name: [] for spec in SPECS}
    for parts, nli_p in zip(components, contradiction_p, strict=True):
        row = {**parts, "nli_contradiction": nli_p}
        for name, value in row.items():
            out[name].append(value)
        out[INDEX].append(combine(row, weights))
        probability = calibration.probability(parts)
        out[PROBABILITY].append(probability)
        out[FLAG].append(float(probability >= calibration.threshold))
    return out


class NliScorer:
    """A local sequence-classification model (NLI or HHEM-style) whose contradiction or
    hallucination label probability joins the index."""

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 16) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        self.device, self.batch_size = device, batch_size
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        match = [i for name, i in labels.items() if "contradict" in name or "halluc" in name]
        if not match:
            raise ValueError(f"{path}: no contradiction or hallucination label in {sorted(labels)}")
        self.label = match[0]

    def contradiction(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[float]:
        import torch

        probabilities: list[float] = []
        for start in range(0, len(premises), self.batch_size):
            encoded = self.tokenizer(
                list(premises[start : start + self.batch_size]),
                list(hypotheses[start : start + self.batch_size]),
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits
            probabilities.extend(torch.softmax(logits, dim=-1)[:, self.label].tolist())
        return probabilities
