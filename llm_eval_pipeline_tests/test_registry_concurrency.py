"""`llm-eval models add` in many processes at once on one home: no registration is lost
and no reader sees a half-written models.yaml."""

from pathlib import Path

import pytest

from llm_eval_pipeline.core.models import ModelRegistry
from llm_eval_pipeline_tests.processes import environment, finish, start_llm_eval

WRITERS = 16


@pytest.mark.e2e
def test_sixteen_concurrent_adds_are_all_registered(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environment(home)
    names = [f"logged-{i:02d}" for i in range(WRITERS)]
    adds = [
        start_llm_eval(env, "models", "add", name, "--backend", "precomputed", "--column", name)
        for name in names
    ]
    lists = [start_llm_eval(env, "models", "list") for _ in range(6)]
    added = []
    for name, process in zip(names, adds, strict=True):
        code, output = finish(process)
        assert code == 0, output
        added.append(name)
    for process in lists:
        code, output = finish(process)
        assert code == 0, f"`models list` during the writes failed:\n{output}"
    registered = [spec.name for spec in ModelRegistry(home / "models.yaml").load()]
    assert sorted(registered) == sorted(added)
    assert not [p.name for p in home.iterdir() if p.name.startswith(".models.yaml.") and
                not p.name.endswith(".lock")]  # fmt: skip
