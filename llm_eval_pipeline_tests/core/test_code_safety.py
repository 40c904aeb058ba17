"""Nothing a dataset or a model spec provides is executed: a model folder's own code runs
only when its spec turns ``trust_remote_code`` on, and the package's source holds no
``eval``, ``exec`` or unpickling of anything."""

import ast
import json
import shutil
from pathlib import Path

import pytest

import llm_eval_pipeline
from llm_eval_pipeline.core.backends.transformers_backend import load_causal_lm
from llm_eval_pipeline.core.models import parse_spec
from llm_eval_pipeline.demo.models import QA_MODEL

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
FORBIDDEN_ATTRIBUTES = {
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("torch", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}


def test_the_package_never_evaluates_or_unpickles() -> None:
    found = []
    for source in Path(llm_eval_pipeline.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            where = f"{source.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in FORBIDDEN_CALLS:
                    found.append(f"{where} calls {node.func.id}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES:
                    found.append(f"{where} uses {node.value.id}.{node.attr}")
            elif isinstance(node, ast.Import):
                found += [f"{where} imports {a.name}" for a in node.names if _forbidden(a.name)]
            elif isinstance(node, ast.ImportFrom) and _forbidden(node.module or ""):
                found.append(f"{where} imports {node.module}")
    assert found == []


def _forbidden(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN_MODULES


@pytest.fixture
def model_with_code(tmp_path: Path, tiny_models: Path) -> tuple[Path, Path]:
    """The tiny demo model with code of its own that the config points transformers to;
    importing that code leaves a marker file."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_models / QA_MODEL, folder)
    marker = tmp_path / "code_ran"
    (folder / "custom_gpt.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import GPT2Config, GPT2LMHeadModel\n"
        "class CustomConfig(GPT2Config):\n    pass\n"
        "class CustomModel(GPT2LMHeadModel):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "custom_gpt.CustomConfig",
        "AutoModelForCausalLM": "custom_gpt.CustomModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def test_a_model_folders_code_runs_only_when_the_spec_trusts_it(model_with_code) -> None:
    folder, marker = model_with_code
    plain = parse_spec({"name": "m", "backend": "transformers", "options": {"path": str(folder)}})
    try:
        load_causal_lm(plain, "cpu")
    except ValueError as exc:  # refusing the folder is as good as ignoring its code
        assert "trust_remote_code" in str(exc)
    assert not marker.exists()

    trusting = parse_spec(
        {"name": "m", "backend": "transformers",
         "options": {"path": str(folder), "trust_remote_code": True}}
    )  # fmt: skip
    load_causal_lm(trusting, "cpu")
    assert marker.read_text() == "ran"
