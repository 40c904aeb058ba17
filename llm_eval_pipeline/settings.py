"""Runtime settings: where the pipeline keeps its state and how it reaches Spark.

Read once per process by :func:`get_settings`. This is the only module that reads the
environment or ``LLM_EVAL_HOME/config.yaml`` for these values; everything else receives a
:class:`Settings` (or a resource built from one).

Each setting is declared once, as a field of :class:`Settings` made by :func:`setting`:
its default, its ``config.yaml`` key, its environment variable (if any), its help line
and the parser that validates it. :meth:`Settings.load` iterates the fields, refuses keys
it does not know (naming the nearest valid one) and values it cannot use; the README's
settings table is :func:`settings_table` (a test keeps the two equal).

Precedence, highest first: environment variable, ``config.yaml``, default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.metrics.config import DEFAULT_GROUPS, GROUPS
from llm_eval_pipeline.core.metrics.registry import METRICS
from llm_eval_pipeline.core.schema import (
    ALL_METRIC_COLUMNS,
    TASKS,
)
from llm_eval_pipeline.delta.maintenance import MIN_RETENTION_HOURS

Profile = Literal["local", "cluster"]
DeltaEngineName = Literal["deltars", "spark"]

HOME_ENV = "LLM_EVAL_HOME"


class SettingsError(UserError, ValueError):
    """A setting has a value the pipeline cannot use."""


# ---------------------------------------------------------------- parsers
# Each takes the raw value (a string from the environment, any YAML value from the file)
# and returns the typed value or raises ValueError with what was expected.

Parser = Callable[[Any], Any]


def _text(value: Any) -> str:
    if isinstance(value, Mapping | list):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _choice(*options: str, upper: bool = False) -> Parser:
    def parse(value: Any) -> str:
        text = str(value).upper() if upper else str(value)
        if text not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return text

    return parse


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a YYYY-MM-DD date") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _number(kind: type, minimum: float | None = None, maximum: float | None = None) -> Parser:
    noun = "a whole number" if kind is int else "a number"

    def parse(value: Any) -> int | float:
        if isinstance(value, bool | Mapping | list):
            raise ValueError(f"expected {noun}, got {value!r}")
        try:
            number = kind(value)
            if kind is int and isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"expected {noun}, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}, got {value!r}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}, got {value!r}")
        return number

    return parse


def _names(allowed: tuple[str, ...], what: str) -> Parser:
    def parse(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not items:
            raise ValueError(f"expected a non-empty list of {what}, got {value!r}")
        names = tuple(str(i).strip() for i in items)
        for name in names:
            if name not in allowed:
                raise ValueError(f"unknown {what[:-1]} {name!r}{_did_you_mean(name, allowed)}")
        return names

    return parse


def _words(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i for i in items):
        raise ValueError(f"expected a list of names, got {value!r}")
    return tuple(i.strip() for i in items)


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _time_of_day(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 06:00 as 360
        value = f"{value // 60:02d}:{value % 60:02d}"
    try:
        return dt.time.fromisoformat(str(value)).strftime("%H:%M")
    except ValueError:
        raise ValueError(f"{value!r} is not an HH:MM time of day") from None


def _postgres_url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        raise ValueError(f"{redacted_url(text)!r} is not a postgresql://user:password@host/db URL")
    return text


POSTGRES_DRIVER = "postgresql+psycopg2"


def with_scheme(url: str, scheme: str, path: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=scheme, path=path if path is not None else parts.path))


def dagster_database_url(database_url: str) -> str:
    """Dagster's instance storage: the database of ``database_url``, through psycopg2.

    psycopg2 is named explicitly: SQLAlchemy 2.1 reads a bare ``postgresql://`` as
    psycopg 3, whose server-side parameters dagster-postgres's ``NOTIFY run_events,
    %(id)s`` does not survive (seen here: every schedule tick failed)."""
    return with_scheme(database_url, POSTGRES_DRIVER)


def mlflow_database_url(database_url: str) -> str:
    """The MLflow tracking store: the same server, the database name + ``_mlflow``
    (Dagster's and MLflow's tables would collide in one database)."""
    name = urlsplit(database_url).path.lstrip("/") or "postgres"
    return with_scheme(database_url, POSTGRES_DRIVER, f"/{name}_mlflow")


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else url


def _optional(parse: Parser) -> Parser:
    def parse_optional(value: Any) -> Any:
        return None if value in (None, "") else parse(value)

    return parse_optional


def _did_you_mean(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


# ---------------------------------------------------------------- declaration

PATH, PATHS = "path", "paths"  # values resolved against the home (file) or cwd (environment)


def setting(
    default: Any,
    help: str,
    parse: Parser,
    env: str | None = None,
    key: str | None = None,
    kind: str | None = None,
) -> Any:
    """A field of :class:`Settings`: its default and how it is read. ``key`` is the
    ``config.yaml`` key (default: the field's name); ``kind`` marks paths."""
    meta = {"help": help, "parse": parse, "env": env, "key": key, "kind": kind}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_positive_int = _number(int, minimum=1)
_optional_positive_int = _optional(_positive_int)


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once. ``home`` comes from ``LLM_EVAL_HOME`` (default
    ``./.llm_eval``) and holds ``config.yaml``; the rest come from :func:`setting`."""

    home: Path
    profile: Profile = setting(
        "local", "Spark profile: local[*], or a cluster's master and GPUs",
        _choice("local", "cluster"), env="LLM_EVAL_PROFILE")  # fmt: skip
    delta_engine: DeltaEngineName = setting(
        "deltars", "what writes Delta tables: delta-rs, or delta-spark (needs the Delta jars)",
        _choice("deltars", "spark"), env="LLM_EVAL_DELTA_ENGINE")  # fmt: skip
    start_date: dt.date = setting(
        dt.date(2026, 1, 1), "first daily partition (YYYY-MM-DD)", _date,
        env="LLM_EVAL_START_DATE")  # fmt: skip
    dataset: Path | None = setting(
        None, "static dataset file or Delta table, applied to every day", _optional(_text),
        env="LLM_EVAL_DATASET", kind=PATH)  # fmt: skip
    dataset_name: str | None = setting(
        None, "dataset name (default: the file's stem)", _optional(_text),
        env="LLM_EVAL_DATASET_NAME")  # fmt: skip
    incoming_dir: Path | None = setting(
        None, "drop folder: incoming/YYYY-MM-DD/* belongs to that day (default: home/incoming)",
        _optional(_text), env="LLM_EVAL_INCOMING", kind=PATH)  # fmt: skip
    data_roots: tuple[Path, ...] = setting(
        (), "other folders datasets may be read from (a list; os.pathsep-separated in the "
        "environment)", _text, env="LLM_EVAL_DATA_ROOTS", kind=PATHS)  # fmt: skip
    delta_retention_hours: int = setting(
        168, "weekly maintenance vacuums files unreferenced for longer (at least 1 hour)",
        _number(int, minimum=MIN_RETENTION_HOURS))  # fmt: skip
    spark_ingest_min_bytes: int = setting(
        64 * 1024 * 1024, "days whose sources hold this many bytes or more are read and "
        "validated by Spark tasks (smaller ones on the driver)",
        _number(int, minimum=0))  # fmt: skip
    max_field_chars: int = setting(
        50_000, "longer fields are quarantined", _positive_int)  # fmt: skip
    default_task: str = setting(
        "qa", "task of rows that name none", _choice(*TASKS))  # fmt: skip
    spark_ui: bool = setting(
        True, "start Spark's web UI", _bool, env="LLM_EVAL_SPARK_UI")  # fmt: skip
    spark_master: str | None = setting(
        None, "cluster profile: spark.master", _optional(_text),
        env="LLM_EVAL_SPARK_MASTER")  # fmt: skip
    executor_gpus: float | None = setting(
        None, "cluster profile: GPUs per executor", _optional(_number(float, minimum=0)),
        env="LLM_EVAL_EXECUTOR_GPUS")  # fmt: skip
    task_gpus: float | None = setting(
        None, "cluster profile: GPUs per task", _optional(_number(float, minimum=0)),
        env="LLM_EVAL_TASK_GPUS")  # fmt: skip
    gpu_discovery_script: str | None = setting(
        None, "cluster profile: Spark's GPU discovery script", _optional(_text),
        env="LLM_EVAL_GPU_DISCOVERY_SCRIPT")  # fmt: skip
    spark_conf: Mapping[str, str] = setting(
        {}, "extra Spark configuration (a mapping), applied last", _mapping)  # fmt: skip
    database_url: str | None = setting(
        None, "production: PostgreSQL for Dagster's instance, and database + '_mlflow' on "
        "the same server for MLflow (`llm-eval serve`); unset: sqlite under home",
        _optional(_postgres_url), env="LLM_EVAL_DATABASE_URL")  # fmt: skip
    daily_schedule_time: str = setting(
        "06:00", "UTC time (HH:MM) the daily schedule ingests the previous day; it "
        "runs by itself in the production deployment", _time_of_day,
        env="LLM_EVAL_DAILY_SCHEDULE_TIME")  # fmt: skip
    mlflow_tracking_uri_override: str | None = setting(
        None, "MLflow tracking URI (default: sqlite:///home/mlflow.db)", _optional(_text),
        env="MLFLOW_TRACKING_URI", key="mlflow_tracking_uri")  # fmt: skip
    models_file: Path | None = setting(
        None, "the model registry (default: home/models.yaml)", _optional(_text),
        env="LLM_EVAL_MODELS", kind=PATH)  # fmt: skip
    backfill_days: int = setting(
        7, "days a newly registered model is generated for, back from yesterday",
        _number(int, minimum=0))  # fmt: skip
    max_error_rate: float = setting(
        0.5, "a day×model partition with a larger share of failed rows fails",
        _number(float, minimum=0, maximum=1))  # fmt: skip
    warn_error_rate: float = setting(
        0.05, "the error_rate check warns above this share of failed rows",
        _number(float, minimum=0, maximum=1))  # fmt: skip
    generation_partitions: int | None = setting(
        None, "Spark tasks for generation and scoring (default: Spark's parallelism)",
        _optional_positive_int)  # fmt: skip
    metric_groups: tuple[str, ...] = setting(
        DEFAULT_GROUPS, "metric groups to compute (a list)", _names(GROUPS, "metric groups")
    )
    scorer_model: str | None = setting(
        None, "transformers model that scores perplexity for models without their own",
        _optional(_text))  # fmt: skip
    nli_model: str | None = setting(
        None, "local NLI model whose contradiction joins the hallucination index",
        _optional(_text))  # fmt: skip
    judge_base_url: str | None = setting(
        None, "OpenAI-compatible judge endpoint (the judge group)", _optional(_text)
    )
    judge_model: str | None = setting(None, "the judge's model name", _optional(_text))
    judge_api_key_env: str | None = setting(
        None, "NAME of the variable that holds the judge's key", _optional(_text)
    )
    judge_price_per_1k_prompt_tokens: float | None = setting(
        None, "US dollars per 1,000 prompt tokens of the judge (with the next: judge_cost_usd)",
        _optional(_number(float, minimum=0)))  # fmt: skip
    judge_price_per_1k_output_tokens: float | None = setting(
        None, "US dollars per 1,000 output tokens of the judge",
        _optional(_number(float, minimum=0)))  # fmt: skip
    bootstrap_resamples: int = setting(
        1000, "bootstrap resamples for the 95% intervals", _positive_int)  # fmt: skip
    bootstrap_seed: int = setting(
        0, "seed of the bootstrap", _number(int, minimum=0))  # fmt: skip
    regression_metrics: tuple[str, ...] = setting(
        ("rougeL", "answer_correctness", "hallucination_index", "reference_perplexity"),
        "metrics compared with the baseline model (a list; those of groups left out of "
        "metric_groups are skipped only when this is not set)",
        _names(ALL_METRIC_COLUMNS, "metrics"))  # fmt: skip
    regression_margin: float = setting(
        0.02, "a regression is worse than the baseline by more than this share of its mean",
        _number(float, minimum=0))  # fmt: skip
    regression_margin_floor: float = setting(
        0.01, "the smallest margin, in the metric's units (nats for perplexities): a "
        "difference within it is no change, however small the baseline's mean",
        _number(float, minimum=0))  # fmt: skip
    slice_by: tuple[str, ...] = setting(
        ("task",), "what metric_slices cuts by: task and metadata fields (a list); prompt "
        "length terciles and recurring vs new examples are always added", _words)  # fmt: skip
    min_slice_size: int = setting(
        20, "smaller slices get counts and means but no test", _number(int, minimum=2)
    )
    regression_severity: str = setting(
        "WARN", "severity of a failed regression check: WARN or ERROR",
        _choice("WARN", "ERROR", upper=True))  # fmt: skip

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
    def judge_cache_dir(self) -> Path:
        return self.home / "judge_cache"

    @property
    def spark_local_dir(self) -> Path:
        return self.home / "spark"

    @property
    def incoming(self) -> Path:
        """The drop folder: files in ``incoming/<YYYY-MM-DD>/`` belong to that day."""
        return self.incoming_dir or self.home / "incoming"

    @property
    def mlflow_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` when set; else the PostgreSQL store of the production
        deployment (``database_url``), else sqlite under home."""
        if self.mlflow_tracking_uri_override:
            return self.mlflow_tracking_uri_override
        if self.database_url:
            return mlflow_database_url(self.database_url)
        return f"sqlite:///{self.mlflow_db}"

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
        return dataclasses.replace(
            self,
            dataset=Path(dataset).expanduser().resolve(),
            dataset_name=name or self.dataset_name,
        )

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: the process environment) and the
        ``config.yaml`` in the home it names. Unknown keys and unusable values raise
        :class:`SettingsError` naming the file or variable, the key and what was wrong."""
        env = os.environ if env is None else env
        home = Path(env.get(HOME_ENV, ".llm_eval")).expanduser().resolve()
        config_path = home / "config.yaml"
        config = _read_config(config_path)
        declared = {_key(f): f for f in dataclasses.fields(cls) if f.metadata}
        for key in config:
            if key not in declared:
                raise SettingsError(
                    f"{config_path}: unknown key {key!r}{_did_you_mean(str(key), declared)}"
                )
        values: dict[str, Any] = {}
        for key, field in declared.items():
            meta = field.metadata
            if meta["env"] and env.get(meta["env"]) not in (None, ""):
                raw, where, base = env[meta["env"]], f"{meta['env']} ({key})", Path.cwd()
                if meta["kind"] == PATHS:
                    raw = [r for r in raw.split(os.pathsep) if r]
            elif key in config:
                raw, where, base = config[key], f"{config_path}: {key}", home
            else:
                continue
            try:
                if meta["kind"] == PATHS:
                    if not isinstance(raw, list):
                        raise ValueError(f"expected a list of folders, got {raw!r}")
                    values[field.name] = tuple(_resolve(meta["parse"](r), base) for r in raw)
                elif meta["kind"] == PATH:
                    values[field.name] = _resolve(meta["parse"](raw), base)
                else:
                    values[field.name] = meta["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{where}: {exc}") from None
        settings = cls(home=home, **values)
        return _check_together(settings, explicit=set(values), where=str(config_path))


def _key(field: dataclasses.Field) -> str:
    return field.metadata.get("key") or field.name


def _resolve(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _check_together(settings: Settings, explicit: set[str], where: str) -> Settings:
    """What a single field's parser cannot see: regression metrics must be computed."""
    computed = [
        m for m in settings.regression_metrics if METRICS[m].group in settings.metric_groups
    ]
    if "regression_metrics" in explicit and len(computed) < len(settings.regression_metrics):
        off = [m for m in settings.regression_metrics if m not in computed]
        raise SettingsError(
            f"{where}: regression_metrics {off} belong to groups "
            f"{sorted({METRICS[m].group for m in off})} that metric_groups "
            f"{list(settings.metric_groups)} leaves out"
        )
    judge_prices = (settings.judge_price_per_1k_prompt_tokens,
                    settings.judge_price_per_1k_output_tokens)  # fmt: skip
    if (judge_prices[0] is None) != (judge_prices[1] is None):
        raise SettingsError(
            f"{where}: judge_price_per_1k_prompt_tokens and judge_price_per_1k_output_tokens "
            "go together (give both)"
        )
    if "judge" in settings.metric_groups and not (settings.judge_base_url and settings.judge_model):
        raise SettingsError(f"{where}: the judge metric group needs judge_base_url and judge_model")
    return dataclasses.replace(settings, regression_metrics=tuple(computed))


def settings_table() -> str:
    """The README's table of settings, made from the declarations."""
    lines = [
        "| `config.yaml` key | environment | default | what it sets |",
        "|---|---|---|---|",
    ]
    for field in dataclasses.fields(Settings):
        if not field.metadata:
            continue
        default = field.default if field.default is not dataclasses.MISSING else {}
        if isinstance(default, tuple):
            default = list(default)
        shown = "" if default in (None, (), [], {}) else f"`{_as_yaml(default)}`"
        env = f"`{field.metadata['env']}`" if field.metadata["env"] else ""
        lines.append(f"| `{_key(field)}` | {env} | {shown} | {field.metadata['help']} |")
    return "\n".join(lines)


def _as_yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


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


if __name__ == "__main__":
    print(settings_table())
