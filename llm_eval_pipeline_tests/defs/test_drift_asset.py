"""input_drift through real Dagster materializations: two days with the same examples do
not drift; a day whose prompts are twice as long does, in length."""

import dataclasses
import datetime as dt

from dagster import DagsterInstance, materialize

from llm_eval_pipeline.core.schema import INPUT_DRIFT, Col, Drift
from llm_eval_pipeline.defs.assets.drift import input_drift
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline_tests.conftest import write_jsonl

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]
TOPICS = ["rivers", "mountains", "cities", "lakes", "deserts", "islands"]


def rows(longer: bool = False) -> list[dict[str, object]]:
    out = []
    for i in range(60):
        prompt = f"Name one fact about {TOPICS[i % 6]} number {i} " + "in detail " * (i % 7)
        out.append({
            "prompt": prompt * 2 if longer else prompt, "references": [f"fact {i}"],
            "task": "qa", "source": "alpha" if i % 2 else "beta",
        })  # fmt: skip
    return out


def test_same_examples_do_not_drift_and_doubled_prompts_do(home: Settings, spark) -> None:
    settings = dataclasses.replace(home, slice_by=("task", "source"))
    for day, longer in zip(DAYS, (False, False, True), strict=True):
        write_jsonl(settings.incoming / day / "examples.jsonl", rows(longer))
    resources = build_resources(settings)
    instance = DagsterInstance.ephemeral()
    metadata = {}
    for day in DAYS:
        result = materialize(
            [ingest_examples, input_drift], partition_key=day, resources=resources,
            instance=instance,
        )  # fmt: skip
        assert result.success
        (event,) = result.asset_materializations_for_node("input_drift")
        metadata[day] = {k: getattr(v, "value", v) for k, v in event.metadata.items()}

    first, same, longer = (metadata[d] for d in DAYS)
    assert first["previous_day"] == "none" and first["ids_added"] == 60
    assert same["previous_day"] == DAYS[0]
    assert (same["ids_added"], same["ids_removed"], same["ids_kept"]) == (0, 0, 60)
    assert same["drifted_tests"] == [], same["tests"]
    assert same["drifted.prompt_embedding_shift"] == "no"
    assert longer["ids_added"] == 60 and longer["ids_removed"] == 60
    assert longer["drifted.prompt_length_ks"] == "yes"
    assert longer["drifted.prompt_length_psi"] == "yes"
    assert longer["drifted.task_mix"] == "no"
    assert longer["drifted.metadata.source_mix"] == "no"

    table = DeltaStore(settings.delta_dir).read_arrow(INPUT_DRIFT).to_pandas()
    last = table[table[Col.EVAL_DATE] == dt.date.fromisoformat(DAYS[2])].set_index(Drift.TEST)
    assert last.loc["prompt_length_ks", Drift.DRIFTED]
    assert last.loc["prompt_length_ks", Drift.PREVIOUS_DATE] == dt.date.fromisoformat(DAYS[1])
    assert last.loc["ids_kept", Drift.STATISTIC] == 0
    # a re-materialization replaces the day's rows
    assert materialize(
        [ingest_examples, input_drift], partition_key=DAYS[2], resources=resources,
        instance=instance,
    ).success  # fmt: skip
    again = DeltaStore(settings.delta_dir).read_arrow(INPUT_DRIFT).to_pandas()
    assert len(again) == len(table)
