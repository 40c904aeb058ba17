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


def _config(tmp_path: Path, text: str) -> Settings:
    (tmp_path / "config.yaml").write_text(text)
    return Settings.load(env={"LLM_EVAL_HOME": str(tmp_path)})


def test_a_misspelled_key_names_the_file_the_key_and_the_nearest_valid_name(
    tmp_path: Path,
) -> None:
    with pytest.raises(SettingsError) as failure:
        _config(tmp_path, "bootstrap_resample: 10\n")
    message = str(failure.value)
    assert str(tmp_path / "config.yaml") in message
    assert "'bootstrap_resample'" in message and "did you mean bootstrap_resamples?" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bootstrap_resamples: many\n", "bootstrap_resamples: expected a whole number"),
        ("bootstrap_resamples: -5\n", "bootstrap_resamples: must be at least 1"),
        ("backfill_days: 2.5\n", "backfill_days: expected a whole number"),
        ("max_error_rate: 1.5\n", "max_error_rate: must be at most 1"),
        ("regression_margin: lots\n", "regression_margin: expected a number"),
        ("metric_groups: [rouge, correctnes]\n", "did you mean correctness?"),
        ("regression_metrics: [rougel]\n", "unknown metric 'rougel' (did you mean rougeL?)"),
        ("spark_ui: maybe\n", "spark_ui: 'maybe' is not true or false"),
        ("regression_severity: fatal\n", "regression_severity"),
        ("default_task: chat\n", "default_task: 'chat' is not one of"),
        ("data_roots: /data\n", "data_roots: expected a list"),
        ("spark_conf: [a]\n", "spark_conf: expected a mapping"),
        (
            "metric_groups: [rouge]\nregression_metrics: [rougeL, hallucination_index]\n",
            "['hallucination_index'] belong to groups ['hallucination']",
        ),
        ("metric_groups: [rouge, judge]\n", "judge metric group needs judge_base_url"),
    ],
)
def test_bad_config_values_stop_loading_with_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SettingsError) as failure:
        _config(tmp_path, text)
    assert message in str(failure.value)
    assert "config.yaml" in str(failure.value)


def test_good_config_values_are_typed(tmp_path: Path) -> None:
    s = _config(
        tmp_path,
        "bootstrap_resamples: 10\nregression_metrics: [rougeL, token_f1]\n"
        "regression_severity: error\nspark_ui: off\nmetric_groups: [rouge, correctness]\n",
    )
    assert s.bootstrap_resamples == 10 and s.regression_severity == "ERROR"
    assert s.regression_metrics == ("rougeL", "token_f1") and s.spark_ui is False


def test_default_regression_metrics_follow_the_enabled_groups(tmp_path: Path) -> None:
    s = _config(tmp_path, "metric_groups: [rouge, correctness]\n")
    assert s.regression_metrics == ("rougeL", "answer_correctness")


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LLM_EVAL_SPARK_UI"):
        Settings.load(env={"LLM_EVAL_HOME": str(tmp_path), "LLM_EVAL_SPARK_UI": "perhaps"})


def test_every_command_stops_on_a_misspelled_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("regression_margn: 0.1\n")
    exe = Path(sys.executable).with_name("llm-eval")
    for argv in (["models", "list"], ["run"], ["demo-models"]):
        done = subprocess.run(
            [str(exe), *argv], capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "LLM_EVAL_HOME": str(tmp_path)},
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "did you mean regression_margin?" in done.stderr


def test_readme_settings_table_is_the_declared_one() -> None:
    from llm_eval_pipeline.settings import settings_table

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- settings:begin -->\n", "\n<!-- settings:end -->"
    shown = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert shown == settings_table(), "README's settings table differs: regenerate it"


def test_importing_the_package_reads_no_settings(tmp_path: Path) -> None:
    """Definitions are built when Dagster loads them: every module imports under a home
    whose config.yaml could not be read, and the settings are read once asked for."""
    import subprocess
    import sys

    (tmp_path / "config.yaml").write_text("start_date: [not a date\n")
    code = (
        "import pkgutil, importlib, llm_eval_pipeline as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'llm_eval_pipeline.'):\n"
        "    importlib.import_module(m.name)\n"
        "from llm_eval_pipeline.settings import get_settings\n"
        "assert get_settings.cache_info().currsize == 0\n"
        "from llm_eval_pipeline.definitions import defs\n"
        "try:\n"
        "    defs()\n"
        "except Exception as exc:\n"
        "    print('load:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "LLM_EVAL_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"load: {tmp_path / 'config.yaml'}: not valid YAML" in done.stdout
