"""The hallucination index's components, one rule at a time."""

import pytest

from llm_eval_pipeline.core.metrics.hallucination import Polarity, hallucination_components

CONTEXT = (
    "A day has 1,440 minutes. Spiders are arachnids rather than insects. "
    "Mount Fuji has not erupted since 1707. Earth rotates from west to east. "
    "Coffee first grew in the highlands of Ethiopia. Mars is smaller than Earth."
)


def components(output: str, reference: str = "") -> dict[str, float | None]:
    return hallucination_components(
        output, "Tell me a fact.", CONTEXT, [reference] if reference else []
    )


@pytest.mark.parametrize(
    ("output", "share"),
    [
        ("A day has 1440 minutes.", 0.0),
        ("A day has one thousand four hundred and forty minutes.", 0.0),
        ("A day has 1,640 minutes.", 1.0),
        ("Coffee first grew in the Ethiopian highlands.", 0.0),
        ("Coffee first grew in the highlands of Kenya.", 0.5),
    ],
)
def test_numbers_and_names_must_be_in_the_evidence(output: str, share: float) -> None:
    assert components(output)["unsupported_fact_share"] == share


@pytest.mark.parametrize(
    ("output", "contradiction"),
    [
        ("Spiders are arachnids, not insects.", 0.0),
        ("Spiders are insects, not arachnids.", 1.0),
        ("Spiders are not arachnids.", 1.0),
        ("Mount Fuji last erupted in 1707.", 0.0),
        ("Earth rotates from west to east.", 0.0),
        ("Earth rotates from east to west.", 1.0),
        ("Mars is larger than Earth.", 1.0),
        ("Mars is smaller than Earth.", 0.0),
    ],
)
def test_contradictions(output: str, contradiction: float) -> None:
    assert components(output)["contradiction"] == contradiction


def test_polarity_reads_negation_scope_per_clause() -> None:
    polarity = Polarity.of("The hump stores fat, not water, and it doesn't hold bones.")
    assert polarity.negated == {"water", "hold"}
    assert {"hump", "store", "fat", "bone"} <= polarity.affirmed
    assert Polarity.of("It has not erupted since 1707.").negated == set()
    assert Polarity.of("It is not only big but old.").negated == set()
    assert Polarity.of("Echo: ;, ()") == Polarity(frozenset({"echo"}), frozenset())


def test_unsupported_content_and_answer() -> None:
    faithful = components("Spiders are arachnids.", "arachnids")
    invented = components("Spiders are reptiles that lay golden eggs.", "arachnids")
    assert faithful["unsupported_content_share"] == 0.0
    assert faithful["unsupported_answer_share"] == 0.0
    assert invented["unsupported_content_share"] > 0.5
    assert invented["unsupported_answer_share"] == 1.0
    assert components("Spiders are arachnids.")["unsupported_answer_share"] is None


def test_empty_output_states_nothing() -> None:
    assert components("  ...  ", "arachnids") == {
        "unsupported_fact_share": 0.0,
        "unsupported_content_share": 0.0,
        "unsupported_answer_share": 0.0,
        "contradiction": 0.0,
        "unbound_relation": None,
        "wrong_comparison": None,
    }
