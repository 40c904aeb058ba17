"""The hallucination calibration and the comparison rule."""

import json

import numpy as np
import pytest

from llm_eval_pipeline.core.metrics.calibration import (
    CONSTANTS,
    FEATURES,
    LEXICAL,
    features,
    shipped,
)
from llm_eval_pipeline.core.metrics.hallucination import (
    comparison_verdict,
    hallucination_components,
    unbound_relation,
)
from llm_eval_pipeline.data import DEV, labelled_rows
from llm_eval_pipeline.fit_calibration import design, fit_logistic

PASSAGE = (
    "The Varn Canal was dug in 1812 and runs 64 kilometres. "
    "The Osel Canal, its rival, opened in 1797; it runs 41 kilometres."
)


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Which was dug first, the Varn Canal or the Osel Canal?", "The Osel Canal", 0.0),
        ("Which was dug first, the Varn Canal or the Osel Canal?", "The Varn Canal", 1.0),
        ("Which is longer, the Varn Canal or the Osel Canal?", "The Varn Canal is longer.", 0.0),
        ("Which is shorter, the Varn Canal or the Osel Canal?", "The Varn Canal, by far.", 1.0),
        ("Which is longer, the Varn Canal or the Osel Canal?", "Osel Canal, not Varn Canal.", 1.0),
        ("Which is prettier, the Varn Canal or the Osel Canal?", "The Varn Canal", None),
        ("How long is the Varn Canal?", "64 kilometres", None),
    ],
)  # fmt: skip
def test_a_comparison_answered_with_the_candidate_the_numbers_rule_out(
    question: str, answer: str, expected: float | None
) -> None:
    assert comparison_verdict(answer, question, PASSAGE) == expected


def test_the_probability_rises_with_each_sign_of_fabrication() -> None:
    calibration = shipped()
    clean = {name: 0.0 for name in FEATURES} | {"unsupported_answer_share": 0.0}
    base = calibration.probability(clean)
    assert 0.0 < base < 0.5
    for name in LEXICAL:  # each, through its coefficient or the lexical index
        assert calibration.probability({**clean, name: 1.0}) > base, name
    # no reference: the reference_free feature is on
    free = features({**clean, "unsupported_answer_share": None})
    assert free[FEATURES.index("reference_free")] == 1.0


def test_the_fit_keeps_every_sign_of_fabrication_non_negative() -> None:
    rng = np.random.default_rng(0)
    n = 400
    signal, against = rng.random(n), rng.random(n)
    offset = rng.integers(0, 2, n).astype(float)
    y = (signal - 0.8 * against - 0.5 * offset + 0.2 * rng.standard_normal(n) > 0).astype(float)
    x = np.column_stack([np.ones(n), signal, against, offset])
    free = fit_logistic(x, y, monotone=(False, False, False))
    assert free[2] < 0 and free[3] < 0  # unconstrained, both come out negative
    fitted = fit_logistic(x, y, monotone=(True, True, False))
    assert fitted[1] > 0 and fitted[2] == 0.0  # the sign of fabrication is held at 0
    assert fitted[3] < 0  # an offset may take either sign


def test_the_shipped_constants_are_what_the_script_fits_on_the_dev_part() -> None:
    x, y = design(labelled_rows(DEV))
    fitted = fit_logistic(x, y)
    data = json.loads(CONSTANTS.read_text())
    assert data["features"] == list(FEATURES)
    np.testing.assert_allclose(
        [data["intercept"], *data["coefficients"]], fitted, atol=1e-5, err_msg=str(CONSTANTS)
    )
    assert "test" not in data["fitted_on"]


def test_a_reference_free_answer_is_scored_on_the_evidence() -> None:
    parts = hallucination_components(
        "The Osel Canal was dug in 1750.", "When was the Osel Canal opened?", PASSAGE, []
    )
    assert parts["unsupported_answer_share"] is None and parts["unsupported_fact_share"] > 0
    assert shipped().probability(parts) > shipped().probability(
        hallucination_components(
            "It opened in 1797.", "When was the Osel Canal opened?", PASSAGE, []
        )
    )


FILM = (
    "The film Grey Harbour was directed by Lena Ostrova. Marek Vidal starred in Grey "
    "Harbour, and Ida Sorn wrote its score."
)


@pytest.mark.parametrize(
    ("question", "answer", "bound"),
    [
        ("Who directed Grey Harbour?", "Lena Ostrova", True),
        ("Who directed Grey Harbour?", "Marek Vidal", False),
        ("Who wrote the score of Grey Harbour?", "Ida Sorn", True),
        ("Who wrote the score of Grey Harbour?", "Lena Ostrova", False),
        ("About Grey Harbour?", "It was Lena Ostrova who directed Grey Harbour.", True),
        ("About Grey Harbour?", "It was Marek Vidal who directed Grey Harbour.", False),
        ("And Marek Vidal?", "He starred in Grey Harbour, which Lena Ostrova directed.", True),
        ("And Marek Vidal?", "He directed Grey Harbour, in which Lena Ostrova starred.", False),
    ],
)  # fmt: skip
def test_a_relation_built_from_supported_words_must_hold_in_one_evidence_clause(
    question: str, answer: str, bound: bool
) -> None:
    found = unbound_relation(answer, question, FILM)
    assert found is not None and (found == 0.0) == bound, found


HOST = "The wasp Tarsa velina lays its eggs inside the larvae of the Morrow moth."


@pytest.mark.parametrize(
    ("answer", "bound"),
    [
        ("Tarsa velina lays its eggs inside the larvae of the Morrow moth.", True),
        ("The Morrow moth lays its eggs inside the larvae of Tarsa velina.", False),
        ("The larvae of the Morrow moth are where eggs are laid by Tarsa velina.", True),
    ],
)  # fmt: skip
def test_a_relation_whose_roles_are_swapped_is_unbound(answer: str, bound: bool) -> None:
    found = unbound_relation(answer, "What links Tarsa velina and the Morrow moth?", HOST)
    assert found is not None and (found == 0.0) == bound, found


ORBIT = (
    "The exoplanet Tereth b orbits the red dwarf Calyx-9 once every 11 days. "
    "The text editor Wrenpad was forked from the older editor Scribe in 2012 by volunteers."
)


@pytest.mark.parametrize(
    ("answer", "bound"),
    [
        ("Tereth b orbits Calyx-9.", True),
        ("Calyx-9 orbits Tereth b.", False),
        ("Wrenpad is a fork of Scribe.", True),
        ("Scribe is a fork of Wrenpad.", False),
    ],
)  # fmt: skip
def test_a_short_answer_that_is_a_clause_has_its_roles_checked(answer: str, bound: bool) -> None:
    # a "by" further on than just after the relation word does not make it passive
    found = unbound_relation(answer, "How are they related?", ORBIT)
    assert found is not None and (found == 0.0) == bound, found


BANKS = (
    "Halden Bank was founded in 1874 in Oslo. It merged with Nordvest Credit in 2001.\n\n"
    "Nordvest Credit was established in Bergen in 1856. The research ship Aurora Vale, "
    "launched in 2005, is 96 metres long."
)


def test_a_candidate_is_valued_where_it_is_the_subject_and_years_keep_their_commas() -> None:
    question = "Which bank is older, Halden Bank or Nordvest Credit?"
    assert comparison_verdict("Nordvest Credit", question, BANKS) == 0.0
    assert comparison_verdict("Halden Bank", question, BANKS) == 1.0
    ships = "The Nordstjerna, launched in 1998, is 122 metres long. " + BANKS.split("\n\n")[1]
    question = "Which ship is longer, the Nordstjerna or the Aurora Vale?"
    assert comparison_verdict("The Nordstjerna", question, ships) == 0.0


@pytest.mark.parametrize(
    ("answer", "share"),
    [
        ("Nordvest Credit is eighteen years older than Halden Bank.", 0.0),
        ("Nordvest Credit is 18 years older than Halden Bank.", 0.0),
        ("Nordvest Credit is 25 years older than Halden Bank.", 1 / 4),
        ("Nordvest Credit had 18 branches.", 1 / 3),  # no comparison: a new number
    ],
)  # fmt: skip
def test_a_difference_of_the_evidence_numbers_is_supported_in_a_comparison(
    answer: str, share: float
) -> None:
    parts = hallucination_components(answer, "Which bank is older?", BANKS, [])
    assert parts["unsupported_fact_share"] == pytest.approx(share)


BRIDGE = FILM + "\n\nMarek Vidal is an actor and painter. He was born in the town of Pellow."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Pellow", 0.0),  # "born" meets Pellow; "star" meets only the bridge, Marek Vidal
        ("Lena Ostrova", 1.0),  # no word of the question meets her
        ("Grey Harbour", None),  # names only what the question names
    ],
)  # fmt: skip
def test_a_short_answer_to_a_multi_hop_question_needs_one_relation_word_bound(
    answer: str, expected: float | None
) -> None:
    question = "In which town was the star of Grey Harbour born?"
    assert unbound_relation(answer, question, BRIDGE) == expected


def test_a_comparison_candidate_may_hold_short_lower_case_words() -> None:
    passage = (
        "Friends of the Marsh was founded in 1921 by birdwatchers. Lantern for Readers is a "
        "literacy charity. It was founded in 1958."
    )
    question = "Which society was founded first, Friends of the Marsh or Lantern for Readers?"
    assert comparison_verdict("Friends of the Marsh", question, passage) == 0.0
    assert comparison_verdict("Lantern for Readers was founded first.", question, passage) == 1.0
