"""Runtime settings: where the pipeline keeps its state and how it reaches Spark.

Read once per process by :func:`get_settings`. This is the only module that reads the
environment or ``LLM_EVAL_HOME/config.yaml`` for these values; everything else receives a
:class:`Settings` (or a resource built from one).

Precedence, highest first: environment variable, ``config.yaml``, default.

============================== ======================== =========================
setting                        environment              config.yaml key
============================== ======================== =========================
home                           ``LLM_EVAL_HOME``        (where config.yaml lives)
profile (local | cluster)      ``LLM_EVAL_PROFILE``     ``profile``
Delta engine (deltars | spark) ``LLM_EVAL_DELTA_ENGINE`` ``delta_engine``
first daily partition          ``LLM_EVAL_START_DATE``  ``start_date``
static dataset                 ``LLM_EVAL_DATASET``     ``dataset``
dataset name                   ``LLM_EVAL_DATASET_NAME`` ``dataset_name``
drop folder                    ``LLM_EVAL_INCOMING``    ``incoming_dir``
extra data roots               ``LLM_EVAL_DATA_ROOTS``  ``data_roots`` (list)
longest accepted field         --                       ``max_field_chars``
task when a row has none       --                       ``default_task``
Spark UI on/off                ``LLM_EVAL_SPARK_UI``    ``spark_ui``
Spark master (cluster)         ``LLM_EVAL_SPARK_MASTER`` ``spark_master``
GPUs per executor (cluster)    ``LLM_EVAL_EXECUTOR_GPUS`` ``executor_gpus``
GPUs per task (cluster)        ``LLM_EVAL_TASK_GPUS``   ``task_gpus``
GPU discovery script (cluster) ``LLM_EVAL_GPU_DISCOVERY_SCRIPT`` ``gpu_discovery_script``
extra Spark conf               --                       ``spark_conf`` (mapping)
MLflow tracking URI            ``MLFLOW_TRACKING_URI``  ``mlflow_tracking_uri``
model registry file            ``LLM_EVAL_MODELS``      ``models_file``
days a new model backfills     --                       ``backfill_days`` (7)
row error rate that fails      --                       ``max_error_rate`` (0.5)
Spark tasks for generation     --                       ``generation_partitions``
metric groups                  --                       ``metric_groups`` (list)
perplexity scorer model        --                       ``scorer_model``
NLI model for hallucinations   --                       ``nli_model``
judge endpoint                 --                       ``judge_base_url``, ``judge_model``,
                                                        ``judge_api_key_env``
bootstrap resamples and seed   --                       ``bootstrap_resamples`` (1000),
                                                        ``bootstrap_seed`` (0)
regression checks              --                       ``regression_metrics`` (list),
                                                        ``regression_margin`` (0.02),
                                                        ``regression_severity`` (WARN)
============================== ======================== =========================
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Profile = Literal["local", "cluster"]
DeltaEngineName = Literal["deltars", "spark"]

PROFILES: tuple[str, ...] = ("local", "cluster")
DELTA_ENGINES: tuple[str, ...] = ("deltars", "spark")
DEFAULT_START_DATE = dt.date(2026, 1, 1)
DEFAULT_REGRESSION_METRICS: tuple[str, ...] = (
    "rougeL",
    "answer_correctness",
    "hallucination_index",
    "reference_perplexity",
)
SEVERITIES: tuple[str, ...] = ("WARN", "ERROR")


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    home: Path
    profile: Profile = "local"
    delta_engine: DeltaEngineName = "deltars"
    start_date: dt.date = DEFAULT_START_DATE
    dataset: Path | None = None
    dataset_name: str | None = None
    incoming_dir: Path | None = None
    data_roots: tuple[Path, ...] = ()
    max_field_chars: int = 50_000
    default_task: str = "qa"
    spark_ui: bool = True
    spark_master: str | None = None
    executor_gpus: float | None = None
    task_gpus: float | None = None
    gpu_discovery_script: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    mlflow_tracking_uri_override: str | None = None
    models_file: Path | None = None
    backfill_days: int = 7
    max_error_rate: float = 0.5
    generation_partitions: int | None = None
    metric_groups: tuple[str, ...] = ("rouge", "correctness", "perplexity", "hallucination")
    scorer_model: str | None = None
    nli_model: str | None = None
    judge_base_url: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str | None = None
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    regression_metrics: tuple[str, ...] = DEFAULT_REGRESSION_METRICS
    regression_margin: float = 0.02
    regression_severity: str = "WARN"

    @property
    def dashboard_dir(self) -> Path:
        return self.home / "dashboard"

    @property
    def delta_dir(self) -> Path:
        return self.home / "delta"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def models_yaml(self) -> Path:
        return self.models_file or self.home / "models.yaml"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def mlartifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def spark_local_dir(self) -> Path:
        return self.home / "spark"

    @property
    def incoming(self) -> Path:
        """The drop folder: files in ``incoming/<YYYY-MM-DD>/`` belong to that day."""
        return self.incoming_dir or self.home / "incoming"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri_override or f"sqlite:///{self.mlflow_db}"

    @property
    def allowed_data_roots(self) -> tuple[Path, ...]:
        """Folders a dataset may be read from: the configured roots, the home, the drop
        folder and the static dataset's own folder."""
        roots = [*self.data_roots, self.home, self.incoming]
        if self.dataset is not None:
            roots.append(self.dataset.parent)
        return tuple(dict.fromkeys(p.resolve() for p in roots))

    def with_dataset(self, dataset: Path | str, name: str | None = None) -> Settings:
        """A copy pointed at another static dataset (what ``llm-eval run --dataset`` does)."""
        values = dict(self.__dict__)
        values["dataset"] = Path(dataset).expanduser().resolve()
        values["dataset_name"] = name or self.dataset_name
        return Settings(**values)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: the process environment) and the
        ``config.yaml`` in the home it names."""
        env = os.environ if env is None else env
        home = Path(env.get("LLM_EVAL_HOME", ".llm_eval")).expanduser().resolve()
        config_path = home / "config.yaml"
        config = _read_config(config_path)

        def pick(env_name: str | None, key: str, default: Any = None) -> Any:
            if env_name and env.get(env_name) not in (None, ""):
                return env[env_name]
            return config.get(key, default)

        def pick_path(env_name: str, key: str) -> Path | None:
            # From the environment a relative path is relative to the working directory;
            # in config.yaml, to the home that holds the file.
            if env.get(env_name):
                return _as_path(env[env_name], Path.cwd())
            return _as_path(config.get(key), home)

        profile = str(pick("LLM_EVAL_PROFILE", "profile", "local"))
        if profile not in PROFILES:
            raise SettingsError(f"profile {profile!r} is not one of {PROFILES}")
        engine = str(pick("LLM_EVAL_DELTA_ENGINE", "delta_engine", "deltars"))
        if engine not in DELTA_ENGINES:
            raise SettingsError(f"delta_engine {engine!r} is not one of {DELTA_ENGINES}")

        if env.get("LLM_EVAL_DATA_ROOTS"):
            roots_base = Path.cwd()
            roots = [r for r in env["LLM_EVAL_DATA_ROOTS"].split(os.pathsep) if r]
        else:
            roots_base = home
            roots = config.get("data_roots") or []
            if not isinstance(roots, list):
                raise SettingsError(f"{config_path}: data_roots must be a list of folders")
        severity = str(pick(None, "regression_severity", "WARN")).upper()
        if severity not in SEVERITIES:
            raise SettingsError(f"regression_severity {severity!r} is not one of {SEVERITIES}")
        spark_conf = config.get("spark_conf") or {}
        if not isinstance(spark_conf, Mapping):
            raise SettingsError(f"{config_path}: spark_conf must be a mapping")

        return cls(
            home=home,
            profile=profile,  # type: ignore[arg-type]
            delta_engine=engine,  # type: ignore[arg-type]
            start_date=_as_date(pick("LLM_EVAL_START_DATE", "start_date", DEFAULT_START_DATE)),
            dataset=pick_path("LLM_EVAL_DATASET", "dataset"),
            dataset_name=pick("LLM_EVAL_DATASET_NAME", "dataset_name"),
            incoming_dir=pick_path("LLM_EVAL_INCOMING", "incoming_dir"),
            data_roots=tuple(_as_path(r, roots_base) for r in roots),  # type: ignore[misc]
            max_field_chars=int(pick(None, "max_field_chars", 50_000)),
            default_task=str(pick(None, "default_task", "qa")),
            spark_ui=_as_bool(pick("LLM_EVAL_SPARK_UI", "spark_ui", True)),
            spark_master=pick("LLM_EVAL_SPARK_MASTER", "spark_master"),
            executor_gpus=_as_float(pick("LLM_EVAL_EXECUTOR_GPUS", "executor_gpus")),
            task_gpus=_as_float(pick("LLM_EVAL_TASK_GPUS", "task_gpus")),
            gpu_discovery_script=pick("LLM_EVAL_GPU_DISCOVERY_SCRIPT", "gpu_discovery_script"),
            spark_conf={str(k): str(v) for k, v in spark_conf.items()},
            mlflow_tracking_uri_override=pick("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
            models_file=pick_path("LLM_EVAL_MODELS", "models_file"),
            backfill_days=int(pick(None, "backfill_days", 7)),
            max_error_rate=float(pick(None, "max_error_rate", 0.5)),
            generation_partitions=_as_int(pick(None, "generation_partitions")),
            metric_groups=tuple(
                config.get("metric_groups")
                or ("rouge", "correctness", "perplexity", "hallucination")
            ),
            scorer_model=config.get("scorer_model"),
            nli_model=config.get("nli_model"),
            judge_base_url=config.get("judge_base_url"),
            judge_model=config.get("judge_model"),
            judge_api_key_env=config.get("judge_api_key_env"),
            bootstrap_resamples=int(pick(None, "bootstrap_resamples", 1000)),
            bootstrap_seed=int(pick(None, "bootstrap_seed", 0)),
            regression_metrics=tuple(
                config.get("regression_metrics") or DEFAULT_REGRESSION_METRICS
            ),
            regression_margin=float(pick(None, "regression_margin", 0.02)),
            regression_severity=severity,
        )


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return Settings.load()


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return loaded


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise SettingsError(f"start_date {value!r} is not a YYYY-MM-DD date") from exc


def _as_path(value: Any, base: Path) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"expected a whole number, got {value!r}") from exc


def _as_float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"expected a number, got {value!r}") from exc
