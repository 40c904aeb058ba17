"""score_batch: edge cases, several references, and the labelled faithfulness set."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.schema import METRIC_COLUMNS, METRIC_NOTES, Col
from llm_eval_pipeline.core.scoring import NO_OUTPUT, NO_REFERENCES, score_batch
from llm_eval_pipeline.data import faithfulness_parts

LABELLED = faithfulness_parts()[0]
NO_PPL = MetricConfig(groups=("rouge", "correctness", "hallucination"))


def batch(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            Col.EXAMPLE_ID: [str(i) for i in range(len(rows))],
            Col.PROMPT: [r.get("prompt", "What is the capital of France?") for r in rows],
            Col.CONTEXT: [r.get("context") for r in rows],
            Col.REFERENCES: [r.get("references", ["Paris"]) for r in rows],
            Col.OUTPUT: [r.get("output") for r in rows],
        }
    )


def test_edge_cases_have_documented_values() -> None:
    scores = score_batch(
        batch(
            [
                {"output": None},
                {"output": "Paris", "references": []},
                {"output": ""},
                {"output": "Lyon", "references": ["Lyon", "Paris"]},
            ]
        ),
        NO_PPL,
    )
    failed, no_refs, empty, multi = scores.to_dict("records")
    assert all(
        math.isnan(failed[c]) for group in ("rouge", "correctness") for c in METRIC_COLUMNS[group]
    )
    assert failed[METRIC_NOTES]["rouge"] == NO_OUTPUT
    assert math.isnan(failed["hallucination_index"])
    assert no_refs[METRIC_NOTES]["correctness"] == NO_REFERENCES
    assert math.isnan(no_refs["rougeL"]) and not math.isnan(no_refs["hallucination_index"])
    assert empty["rougeL"] == 0.0 and empty["exact_match"] == 0.0 and empty["token_f1"] == 0.0
    assert empty["hallucination_index"] == 0.0
    assert multi["exact_match"] == 1.0 and multi["rouge1"] == 1.0


def test_correct_long_answer_scores_high_and_a_fluent_wrong_one_low() -> None:
    scores = score_batch(
        batch(
            [
                {"output": "The capital of France is Paris."},
                {"output": "The capital of France is Lyon."},
            ]
        ),
        NO_PPL,
    )
    right, wrong = scores["answer_correctness"]
    assert right > 0.7 and wrong < 0.3


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney probability that a positive outranks a negative."""
    pos, neg = scores[positive], scores[~positive]
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def test_labelled_set_rankings() -> None:
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines()]
    assert len(rows) >= 60
    scores = score_batch(
        batch(
            [
                {
                    "prompt": r["question"],
                    "context": r["context"],
                    "references": [r["reference"]],
                    "output": r["answer"],
                }
                for r in rows
            ]
        ),
        NO_PPL,
    )
    fabricated = np.array([r["label"] == "fabricated" for r in rows])
    hallucination_auc = auc(scores["hallucination_index"].to_numpy(), fabricated)
    correctness_auc = auc(scores["answer_correctness"].to_numpy(), ~fabricated)
    print(
        f"hallucination_index AUC {hallucination_auc:.3f}; "
        f"answer_correctness AUC {correctness_auc:.3f}"
    )
    assert hallucination_auc >= 0.9
    assert correctness_auc >= 0.9


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric groups"):
        MetricConfig(groups=("rouge", "bleu"))


def test_cosines_stay_in_their_range_and_the_range_check_stays_strict() -> None:
    """float32 unit vectors give 1.0000002 for identical texts; the metric is clipped where
    it is computed, and the range check still counts a real violation."""
    import pandas as pd

    from llm_eval_pipeline.core.aggregate import out_of_range
    from llm_eval_pipeline.core.metrics.correctness import semantic_similarity

    texts = [f"The capital of country number {i} is city {i}." for i in range(40)]
    sims = semantic_similarity(texts, [[t] for t in texts])
    assert all(-1.0 <= s <= 1.0 for s in sims)
    assert max(sims) == 1.0
    assert out_of_range(pd.DataFrame({"semantic_similarity": sims})) == {}
    assert out_of_range(pd.DataFrame({"semantic_similarity": [1.0000002, -1.0000002]})) == {
        "semantic_similarity": 2
    }


def test_a_full_embedding_cache_encodes_each_new_text_once(monkeypatch) -> None:
    """Once the cache is full, a batch's cached texts must survive the insertion of its
    new ones: the all-MiniLM model sees only the texts it has not seen (with a full cache
    the whole batch used to be encoded a second time), and every vector is the one a
    fresh encoding gives."""
    from collections import OrderedDict

    from llm_eval_pipeline.core.metrics import embeddings

    monkeypatch.setattr(embeddings, "CACHE_TEXTS", 3)
    monkeypatch.setattr(embeddings, "_CACHE", OrderedDict())
    model = embeddings._model(embeddings.default_model_path(), "cpu")
    encoded: list[list[str]] = []

    class Counting:
        def encode(self, texts, **options):
            encoded.append(list(texts))
            return model.encode(texts, **options)

    monkeypatch.setattr(embeddings, "_model", lambda path, device: Counting())
    texts = ["an old text", "another", "a third one", "a new one", "and a fifth"]
    first = embeddings.embed(texts[:3])
    second = embeddings.embed([texts[0], texts[3], texts[4], texts[3]])
    assert encoded == [texts[:3], texts[3:]]
    fresh = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(first, fresh[:3], atol=1e-5)
    np.testing.assert_allclose(second, fresh[[0, 3, 4, 3]], atol=1e-5)
    assert list(text for _, _, text in embeddings._CACHE) == [texts[0], texts[3], texts[4]]


def test_metric_config_hash_follows_values_not_operations(tmp_path) -> None:
    """The home folder (the judge's cache), timeouts, retries, concurrency and batch sizes
    leave the hash alone; what changes a metric's value changes it."""
    from llm_eval_pipeline.defs.resources import build_resources
    from llm_eval_pipeline.settings import Settings

    def config_of(home: str, **config: object):
        folder = tmp_path / home
        folder.mkdir()
        (folder / "config.yaml").write_text(
            "metric_groups: [rouge, judge]\njudge_base_url: http://127.0.0.1:9/v1\n"
            + "".join(f"{k}: {v}\n" for k, v in config.items())
        )
        settings = Settings.load(env={"LLM_EVAL_HOME": str(folder)})
        return build_resources(settings)["metrics"].config()

    here, there = config_of("a", judge_model="m"), config_of("b", judge_model="m")
    assert here.judge.cache_dir != there.judge.cache_dir
    assert here.hash == there.hash
    judge = replace(here.judge, timeout_s=99, max_retries=9, max_concurrency=1)
    slower = replace(here, judge=judge, embedding_batch_size=8, perplexity_batch_size=1)
    assert slower.hash == here.hash
    assert config_of("c", judge_model="other").hash != here.hash
    assert replace(here, correctness_penalty=0.5).hash != here.hash
