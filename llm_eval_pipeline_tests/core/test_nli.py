"""A local NLI model's contradiction probability joins the hallucination index."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.metrics.hallucination import NliScorer, combine, nli_premise
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.core.scoring import ScoringContext, score_batch
from llm_eval_pipeline_tests.conftest import build_tiny_nli

PREMISES = [
    "Spiders are arachnids rather than insects.",
    "Mount Fuji last erupted in 1707, and it is the highest mountain in Japan.",
    "",
]
HYPOTHESES = ["Spiders are insects.", "Fuji erupted in 1707.", "Nothing at all."]


def test_contradiction_probability_is_per_pair_and_independent_of_batching(
    tiny_nli: Path,
) -> None:
    one_by_one = NliScorer(str(tiny_nli), batch_size=1).contradiction(PREMISES, HYPOTHESES)
    batched = NliScorer(str(tiny_nli), batch_size=8).contradiction(PREMISES, HYPOTHESES)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
    assert all(0.0 < p < 1.0 for p in batched)
    assert len(set(np.round(batched, 6))) == len(batched)


def test_model_without_a_contradiction_label_is_refused(tmp_path: Path) -> None:
    folder = build_tiny_nli(tmp_path / "sentiment", ("NEGATIVE", "POSITIVE"))
    with pytest.raises(ValueError, match=r"sentiment: no contradiction or hallucination label"):
        NliScorer(str(folder))


def test_nli_joins_the_index_with_its_weight(tiny_nli: Path) -> None:
    batch = pd.DataFrame(
        {
            Col.EXAMPLE_ID: ["a", "b"],
            Col.PROMPT: ["What are spiders?", "When did Fuji erupt?"],
            Col.CONTEXT: PREMISES[:2],
            Col.REFERENCES: [["arachnids"], ["1707"]],
            Col.OUTPUT: HYPOTHESES[:2],
        }
    )
    config = MetricConfig(groups=("hallucination",), nli_model=str(tiny_nli))
    without = score_batch(batch, config)
    scored = score_batch(batch, config, ScoringContext(nli=NliScorer(str(tiny_nli))))
    # the premise is the whole evidence: prompt, context and references
    premises = [
        f"{p}\n{c}\n{r[0]}"
        for p, c, r in zip(batch[Col.PROMPT], PREMISES[:2], batch[Col.REFERENCES], strict=True)
    ]
    assert premises == [
        nli_premise(p, c, r)
        for p, c, r in zip(batch[Col.PROMPT], PREMISES[:2], batch[Col.REFERENCES], strict=True)
    ]
    expected_p = NliScorer(str(tiny_nli)).contradiction(premises, HYPOTHESES[:2])
    np.testing.assert_allclose(scored["nli_contradiction"], expected_p, rtol=1e-6)
    assert without["nli_contradiction"].isna().all()
    assert all("nli_contradiction" not in notes for notes in scored["metric_notes"])
    for i, row in scored.iterrows():
        components = {
            name: None if pd.isna(row[name]) else row[name] for name in config.hallucination_weights
        } | {"nli_contradiction": expected_p[i]}
        assert row["hallucination_index"] == pytest.approx(
            combine(components, config.hallucination_weights)
        )
        assert row["hallucination_index"] != without.loc[i, "hallucination_index"]


def test_the_premise_leaves_out_empty_parts() -> None:
    assert nli_premise("Who wrote it?", None, []) == "Who wrote it?"
    assert nli_premise("Q?", "", ["a", "b"]) == "Q?\na\nb"
