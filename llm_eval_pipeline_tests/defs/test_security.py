"""A planted API key reaches the endpoint and nothing else: not the Delta tables, the
MLflow store and artifacts, the dashboard, the Dagster event log or the terminal."""

from pathlib import Path

from dagster import materialize

from llm_eval_pipeline.core.models import parse_spec
from llm_eval_pipeline.defs.assets.aggregates import metric_aggregates
from llm_eval_pipeline.defs.assets.generation import generations
from llm_eval_pipeline.defs.assets.ingest import ingest_examples
from llm_eval_pipeline.defs.assets.metrics import example_metrics
from llm_eval_pipeline.defs.assets.tracking import eval_dashboard, mlflow_eval_runs
from llm_eval_pipeline.defs.resources import build_resources
from llm_eval_pipeline_tests.conftest import PLANTED_KEY, PLANTED_KEY_ENV
from llm_eval_pipeline_tests.defs.test_generation_asset import DAY, key, register, setup  # noqa: F401
from llm_eval_pipeline_tests.openai_server import FakeServer, serve

KEY, KEY_ENV = PLANTED_KEY, PLANTED_KEY_ENV


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_planted_key_appears_in_no_output(setup, spark, monkeypatch, capfd) -> None:  # noqa: F811
    settings, instance = setup
    resources = build_resources(settings)
    with serve(FakeServer(), monkeypatch) as server:
        options = {"base_url": server.url, "model": "m", "api_key_env": KEY_ENV}
        register(settings, instance, parse_spec({"name": "remote", "backend": "openai",
                                                 "options": options}))  # fmt: skip
        runs = [
            materialize([ingest_examples], partition_key=DAY, resources=resources,
                        instance=instance),
            materialize([generations, example_metrics, metric_aggregates, mlflow_eval_runs],
                        partition_key=key(DAY, "remote"), resources=resources,
                        instance=instance),
            materialize([eval_dashboard], resources=resources, instance=instance),
        ]  # fmt: skip
    assert all(r.success for r in runs)
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {KEY}"}

    assert files_holding(settings.home, KEY.encode()) == []
    for result in runs:
        for record in instance.all_logs(result.run_id):
            assert KEY not in str(record)
    out, err = capfd.readouterr()
    assert KEY not in out and KEY not in err
