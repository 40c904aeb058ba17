"""The Spark scoring path returns exactly what score_batch returns in-process."""

import datetime as dt

import numpy as np
import pandas as pd

from llm_eval_pipeline.core.metrics.config import MetricConfig
from llm_eval_pipeline.core.schema import ALL_METRIC_COLUMNS, METRIC_COLUMNS, METRIC_NOTES, Col
from llm_eval_pipeline.core.scoring import output_columns, score_batch
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.spark.udfs import TaskStats, score_outputs, scoring_context

DAY = dt.date(2026, 11, 20)
ROWS = [
    ("What is the capital of France?", "Paris is the capital of France.", ["Paris"], " Paris"),
    ("When did the wall fall?", "The Berlin Wall fell in 1989.", ["1989", "in 1989"], " 1991"),
    ("Summarize.", "Cats sleep a lot. They hunt at night.", ["Cats sleep and hunt."], " Cats"),
    ("Write a poem.", None, [], " Roses are red."),
    ("Who?", "Ada wrote it.", ["Ada"], None),
]


def test_spark_path_equals_in_process(spark, tiny_specs, tiny_nli) -> None:
    spec = tiny_specs[QA_MODEL]
    frame = pd.DataFrame(
        {
            Col.EXAMPLE_ID: [f"e{i}" for i in range(len(ROWS))],
            Col.PROMPT: [r[0] for r in ROWS],
            Col.CONTEXT: [r[1] for r in ROWS],
            Col.REFERENCES: [r[2] for r in ROWS],
            Col.OUTPUT: [r[3] for r in ROWS],
            Col.GENERATION_CONFIG_HASH: spec.generation_config_hash,
            Col.EVAL_DATE: DAY,
            Col.MODEL_ID: spec.name,
        }
    )
    config = MetricConfig(nli_model=str(tiny_nli))
    expected = score_batch(frame, config, scoring_context(spec, config, "cpu"))
    table, events = score_outputs(spark.createDataFrame(frame), spec, config, partitions=2)
    got = table.toPandas().set_index(Col.EXAMPLE_ID).loc[expected[Col.EXAMPLE_ID]]
    for column in output_columns(config):
        # model outputs depend in the last float32 bits on how rows are batched
        batched_model = column in (
            *METRIC_COLUMNS["perplexity"],
            "nli_contradiction",
            "hallucination_index",
        )
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=float),
            expected[column].to_numpy(dtype=float),
            rtol=1e-5 if batched_model else 1e-9,
            equal_nan=True,
            err_msg=column,
        )
    assert [dict(n) for n in got[METRIC_NOTES]] == list(expected[METRIC_NOTES])
    assert set(got["metric_config_hash"]) == {config.hash}
    assert got[sorted(set(ALL_METRIC_COLUMNS) - set(output_columns(config)))].isna().all().all()
    assert not np.isnan(got.loc["e0", "reference_perplexity"])
    assert not np.isnan(got.loc["e0", "nli_contradiction"])
    assert set(TaskStats(events.value).seconds_per_group()) >= {"rouge", "perplexity"}
