"""Software-defined assets, one module per stage of the pipeline."""

from llm_eval_pipeline.defs.assets.aggregates import metric_aggregates
from llm_eval_pipeline.defs.assets.drift import input_drift
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.maintenance import delta_maintenance
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.assets.slices import metric_slices
from llm_eval_pipeline.defs.assets.tracking import eval_dashboard, mlflow_eval_runs

ALL_ASSETS = [
    ingest_examples,
    input_drift,
    generations,
    example_metrics,
    metric_aggregates,
    metric_slices,
    mlflow_eval_runs,
    eval_dashboard,
    delta_maintenance,
]
