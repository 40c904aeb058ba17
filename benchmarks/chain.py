"""B8: the demo chain for 1 day × 1 model on 150 examples, through Dagster, against the
sum of its stages run bare.

Dagster side: ``materialize`` of ``eval_examples`` for the day, then of ``generations``,
``example_metrics``, ``metric_aggregates`` and ``mlflow_eval_runs`` for the day×model,
in an ephemeral instance. Bare side: the same stage functions the assets call
(``llm_eval_pipeline.stages``), called directly and timed one by one: ingest + Delta
writes, the generation UDF + write, the scoring UDF + write, the aggregates + write, the
MLflow run. Both write to the same home (a re-run replaces each partition),
after one warm-up each (models loaded in the Spark workers, MLflow's store created). The
ratio is the orchestration overhead: Dagster time / bare time.

    .venv/bin/python -m benchmarks.chain [--repetitions 5] [--quick]
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance, MultiPartitionKey, materialize

from benchmarks.common import Result, Timing, demo_model_specs, main_for
from benchmarks.spark_stage import session
from llm_eval_pipeline import stages
from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.defs.assets.aggregates import metric_aggregates
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.assets.tracking import mlflow_eval_runs
from llm_eval_pipeline.defs.partitions import MODELS_PARTITION
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.demo import demo_dataset_path
from llm_eval_pipeline.demo.models import QA_MODEL
from llm_eval_pipeline.settings import Settings

DAY = dt.date(2026, 11, 20)
CHAIN = [generations, example_metrics, metric_aggregates, mlflow_eval_runs]


def prepare(home: Path, examples: int) -> Settings:
    records = Path(demo_dataset_path()).read_text().splitlines()[:examples]
    dataset = home / "data" / "demo150.jsonl"
    dataset.parent.mkdir(parents=True)
    dataset.write_text("\n".join(records) + "\n")
    settings = Settings.load(env={"LLM_EVAL_HOME": str(home), "LLM_EVAL_SPARK_UI": "false"})
    settings = settings.with_dataset(dataset, "demo150")
    ModelRegistry(settings.models_yaml).add(demo_model_specs()[QA_MODEL])
    return settings


def through_dagster(settings: Settings, instance: DagsterInstance) -> None:
    resources = build_resources(settings)
    key = MultiPartitionKey({Col.EVAL_DATE: DAY.isoformat(), Col.MODEL_ID: QA_MODEL})
    for assets, partition in (([ingest_examples], DAY.isoformat()), (CHAIN, key)):
        result = materialize(assets, partition_key=partition, resources=resources,
                             instance=instance, raise_on_error=True)  # fmt: skip
        assert result.success


def bare(settings: Settings, spark) -> dict[str, float]:
    """The chain's work by direct calls of the stage functions the assets wrap; seconds
    per stage."""
    resources = build_resources(settings)
    spec = ModelRegistry(settings.models_yaml).get(QA_MODEL)
    config = resources["metrics"].config()
    store = DeltaStore(settings.delta_dir)
    steps = {
        "ingest": lambda: stages.ingest_day(
            store, spark, DAY, static_path=settings.dataset, incoming=settings.incoming,
            allowed_roots=settings.allowed_data_roots, dataset_name=settings.dataset_name,
            max_field_chars=settings.max_field_chars, default_task=settings.default_task,
        ),
        "generate": lambda: stages.generate_partition(
            store, spark, spec, DAY, max_error_rate=settings.max_error_rate
        ),
        "score": lambda: stages.score_partition(store, spark, spec, config, DAY),
        "aggregate": lambda: stages.aggregate_day_model(
            store, DAY, QA_MODEL, resamples=settings.bootstrap_resamples,
            seed=settings.bootstrap_seed,
        ),
        "mlflow": lambda: stages.log_day_model(
            store, spec, config, DAY, tracking_uri=settings.mlflow_tracking_uri, tags={},
            artifact_location=settings.mlartifacts_dir.as_uri(),
        ),
    }  # fmt: skip
    seconds: dict[str, float] = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
    return seconds


def run(repetitions: int = 5, quick: bool = False, examples: int = 150) -> list[Result]:
    examples = 30 if quick else examples
    spark = session()
    with tempfile.TemporaryDirectory(prefix="bench_chain_") as tmp:
        settings = prepare(Path(tmp), examples)
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(MODELS_PARTITION, [QA_MODEL])
        through_dagster(settings, instance)  # warm-up: worker models, MLflow store
        bare(settings, spark)
        orchestrated, direct, per_run = [], [], []
        for _ in range(repetitions):
            start = time.perf_counter()
            through_dagster(settings, instance)
            orchestrated.append(time.perf_counter() - start)
            per_run.append(bare(settings, spark))
            direct.append(sum(per_run[-1].values()))
    slow, fast = Timing(orchestrated), Timing(direct)
    per_stage = {k: sorted(s[k] for s in per_run)[len(per_run) // 2] for k in per_run[0]}
    ratio = slow.median / fast.median
    return [
        Result(
            "B8",
            f"demo chain, 1 day x 1 model (tiny-qa), {examples} examples",
            "sum of the stages run bare",
            "through Dagster (materialize)",
            fast,
            slow,
            ratio,
            "orchestration overhead reported as a ratio (Dagster / bare)",
            True,
            [
                f"overhead {ratio:.2f}x: {slow.median - fast.median:+.1f} s per chain",
                "bare stages (median s): "
                + json.dumps({k: round(v, 2) for k, v in per_stage.items()}),
            ],
        )
    ]


def main() -> None:
    main_for(run, __doc__)


if __name__ == "__main__":
    main()
