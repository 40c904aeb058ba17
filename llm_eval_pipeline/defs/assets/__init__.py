"""Software-defined assets, one module per stage of the pipeline."""

from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples

ALL_ASSETS = [ingest_examples, generations]
