"""Resources, built from the settings in one place so that a laptop and a cluster differ
only in configuration."""

from pathlib import Path
from typing import Any

from dagster import Config, ConfigurableResource
from dagster_pyspark import PySparkResource

from llm_eval_pipeline.core.cost import Prices, parse_prices
from llm_eval_pipeline.core.metrics.config import JudgeConfig, MetricConfig
from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline.delta.store import DeltaStore
from llm_eval_pipeline.settings import Settings
from llm_eval_pipeline.spark.session import spark_conf, use_this_python_for_workers


class DeltaStoreResource(ConfigurableResource):
    """Where the Delta tables live and which engine writes them. The ``spark`` engine
    writes through the process's active SparkSession, or one started with
    ``spark_config`` when there is none (a running session's configuration is left as
    it is)."""

    root: str
    engine: str
    spark_config: dict[str, Any] | None = None
    retention_hours: int = 168

    def store(self) -> DeltaStore:
        session = None
        if self.engine == "spark":
            from pyspark.sql import SparkSession

            session = (
                SparkSession.getActiveSession()
                or SparkSession.builder.config(map=self.spark_config or {}).getOrCreate()
            )
        return DeltaStore(Path(self.root), self.engine, session)


class DatasetResource(ConfigurableResource):
    """The evaluation dataset: a static file applied to every day and/or a drop folder of
    per-day files, with the validation limits."""

    path: str | None = None
    name: str | None = None
    incoming_dir: str
    allowed_roots: list[str]
    max_field_chars: int
    default_task: str
    spark_ingest_min_bytes: int | None = None

    @property
    def static_path(self) -> Path | None:
        return Path(self.path) if self.path else None


class ModelsResource(ConfigurableResource):
    """The model registry and how generation runs: the row error rates that fail a
    partition and that warn, the number of Spark tasks, and how many past days a new
    model backfills."""

    registry_path: str
    max_error_rate: float
    warn_error_rate: float
    backfill_days: int
    partitions: int | None = None

    def registry(self) -> ModelRegistry:
        return ModelRegistry(Path(self.registry_path))


class JudgeEndpoint(Config):
    """The OpenAI-compatible endpoint of the judge group."""

    base_url: str
    model: str
    api_key_env: str | None = None
    cache_dir: str | None = None
    price_per_1k_prompt_tokens: float | None = None
    price_per_1k_output_tokens: float | None = None

    def prices(self) -> Prices | None:
        return parse_prices(self.model_dump(), "judge endpoint")


class Bootstrap(Config):
    """The seeded percentile bootstrap behind every interval."""

    resamples: int
    seed: int


class RegressionPolicy(Config):
    """What ``no_regression_vs_baseline`` compares, the margin it tolerates (a share of
    the baseline's mean, at least ``margin_floor``) and the severity of a failure."""

    metrics: list[str]
    margin: float
    severity: str
    margin_floor: float


class SlicePolicy(Config):
    """How ``metric_slices`` cuts a partition: ``task`` and metadata fields, and the
    smallest slice that gets a test."""

    slice_by: list[str]
    min_slice_size: int


class MetricsResource(ConfigurableResource):
    """Which metric groups run, the optional models they use (see
    ``core.metrics.config.MetricConfig``), and the statistics of the checks."""

    groups: list[str]
    bootstrap: Bootstrap
    regression: RegressionPolicy
    slices: SlicePolicy
    judge: JudgeEndpoint | None = None
    scorer_model: str | None = None
    nli_model: str | None = None
    partitions: int | None = None

    def config(self) -> MetricConfig:
        judge = None
        if self.judge is not None:
            judge = JudgeConfig(
                self.judge.base_url, self.judge.model, self.judge.api_key_env, self.judge.cache_dir
            )
        return MetricConfig(
            groups=tuple(self.groups),
            scorer_model=self.scorer_model,
            nli_model=self.nli_model,
            judge=judge,
        )


class TrackingResource(ConfigurableResource):
    """Where runs and the dashboard go: the MLflow tracking URI, the artifact location of
    new experiments, and the dashboard folder; how often a failed MLflow call is retried."""

    tracking_uri: str
    artifact_location: str | None = None
    dashboard_dir: str
    retries: int = 3
    backoff_s: float = 2.0


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources every asset uses, for one settings object."""
    use_this_python_for_workers(settings)
    return {
        "spark": PySparkResource(spark_config=spark_conf(settings)),
        "delta": DeltaStoreResource(
            root=str(settings.delta_dir),
            engine=settings.delta_engine,
            spark_config=spark_conf(settings),
            retention_hours=settings.delta_retention_hours,
        ),
        "dataset": DatasetResource(
            path=str(settings.dataset) if settings.dataset else None,
            name=settings.dataset_name,
            incoming_dir=str(settings.incoming),
            allowed_roots=[str(p) for p in settings.allowed_data_roots],
            max_field_chars=settings.max_field_chars,
            default_task=settings.default_task,
            spark_ingest_min_bytes=settings.spark_ingest_min_bytes,
        ),
        "models": ModelsResource(
            registry_path=str(settings.models_yaml),
            max_error_rate=settings.max_error_rate,
            warn_error_rate=settings.warn_error_rate,
            partitions=settings.generation_partitions,
            backfill_days=settings.backfill_days,
        ),
        "metrics": MetricsResource(
            groups=list(settings.metric_groups),
            bootstrap=Bootstrap(
                resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed
            ),
            regression=RegressionPolicy(
                metrics=list(settings.regression_metrics),
                margin=settings.regression_margin,
                severity=settings.regression_severity,
                margin_floor=settings.regression_margin_floor,
            ),
            slices=SlicePolicy(
                slice_by=list(settings.slice_by), min_slice_size=settings.min_slice_size
            ),
            judge=JudgeEndpoint(
                base_url=settings.judge_base_url,
                model=settings.judge_model,
                api_key_env=settings.judge_api_key_env,
                cache_dir=str(settings.judge_cache_dir),
                price_per_1k_prompt_tokens=settings.judge_price_per_1k_prompt_tokens,
                price_per_1k_output_tokens=settings.judge_price_per_1k_output_tokens,
            )
            if settings.judge_base_url and settings.judge_model
            else None,
            scorer_model=settings.scorer_model,
            nli_model=settings.nli_model,
            partitions=settings.generation_partitions,
        ),
        "tracking": TrackingResource(
            tracking_uri=settings.mlflow_tracking_uri,
            # A tracking server stores artifacts where it is configured to, not here.
            artifact_location=settings.mlartifacts_dir.as_uri()
            if settings.mlflow_tracking_uri.startswith("sqlite:")
            else None,
            dashboard_dir=str(settings.dashboard_dir),
        ),
    }
