import datetime as dt
from pathlib import Path

import pytest

from llm_eval_pipeline.settings import Settings, SettingsError
from llm_eval_pipeline.spark.session import spark_conf


def test_defaults_derive_paths_from_home(tmp_path: Path) -> None:
    s = Settings.load(env={"LLM_EVAL_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.profile == "local" and s.delta_engine == "deltars"
    assert s.delta_dir == tmp_path / "delta"
    assert s.dagster_home == tmp_path / "dagster_home"
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.incoming == tmp_path / "incoming"
    assert s.dataset is None


def test_config_yaml_then_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "dataset: data/evals.jsonl\nstart_date: 2026-03-01\nmax_field_chars: 10\n"
        "spark_conf:\n  spark.sql.shuffle.partitions: 2\n"
    )
    s = Settings.load(env={"LLM_EVAL_HOME": str(tmp_path)})
    assert s.dataset == tmp_path / "data" / "evals.jsonl"
    assert s.start_date == dt.date(2026, 3, 1)
    assert s.max_field_chars == 10
    assert spark_conf(s)["spark.sql.shuffle.partitions"] == "2"

    s = Settings.load(env={"LLM_EVAL_HOME": str(tmp_path), "LLM_EVAL_START_DATE": "2026-05-05"})
    assert s.start_date == dt.date(2026, 5, 5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_EVAL_PROFILE": "laptop"}, "profile"),
        ({"LLM_EVAL_DELTA_ENGINE": "parquet"}, "delta_engine"),
        ({"LLM_EVAL_START_DATE": "yesterday"}, "start_date"),
        ({"LLM_EVAL_EXECUTOR_GPUS": "many"}, "number"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env={"LLM_EVAL_HOME": str(tmp_path), **env})


def test_bad_config_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("dataset: [unclosed\n")
    with pytest.raises(SettingsError, match="config.yaml"):
        Settings.load(env={"LLM_EVAL_HOME": str(tmp_path)})


def test_local_profile_spark_conf(tmp_path: Path) -> None:
    conf = spark_conf(Settings.load(env={"LLM_EVAL_HOME": str(tmp_path), "LLM_EVAL_SPARK_UI": "0"}))
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert conf["spark.python.worker.reuse"] == "true"
    assert conf["spark.ui.enabled"] == "false"
    assert "spark.executor.resource.gpu.amount" not in conf


def test_cluster_profile_takes_master_and_gpus_from_environment(tmp_path: Path) -> None:
    conf = spark_conf(
        Settings.load(
            env={
                "LLM_EVAL_HOME": str(tmp_path),
                "LLM_EVAL_PROFILE": "cluster",
                "LLM_EVAL_SPARK_MASTER": "spark://10.0.0.5:7077",
                "LLM_EVAL_EXECUTOR_GPUS": "1",
                "LLM_EVAL_TASK_GPUS": "0.25",
                "LLM_EVAL_GPU_DISCOVERY_SCRIPT": "/opt/spark/getGpusResources.sh",
            }
        )
    )
    assert conf["spark.master"] == "spark://10.0.0.5:7077"
    assert conf["spark.executor.resource.gpu.amount"] == "1"
    assert conf["spark.task.resource.gpu.amount"] == "0.25"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == "/opt/spark/getGpusResources.sh"
    assert "spark.pyspark.python" not in conf


def test_with_dataset_widens_allowed_roots(tmp_path: Path) -> None:
    s = Settings.load(env={"LLM_EVAL_HOME": str(tmp_path / "home")})
    data = tmp_path / "elsewhere" / "x.jsonl"
    s2 = s.with_dataset(data, "x")
    assert s2.dataset == data.resolve() and s2.dataset_name == "x"
    assert data.parent.resolve() in s2.allowed_data_roots
    assert data.parent.resolve() not in s.allowed_data_roots
