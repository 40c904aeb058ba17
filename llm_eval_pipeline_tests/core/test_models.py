"""Model specs and the models.yaml registry."""

from pathlib import Path

import pytest

from llm_eval_pipeline.core.models import (
    GenerationConfig,
    ModelRegistry,
    ModelSpecError,
    parse_spec,
)


def spec(tmp_path: Path, **overrides: object) -> dict[str, object]:
    (tmp_path / "m").mkdir(exist_ok=True)
    raw: dict[str, object] = {
        "name": "m-1",
        "backend": "transformers",
        "options": {"path": str(tmp_path / "m")},
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name"}, "not valid"),
        ({"name": "a/b"}, "not valid"),
        ({"name": ""}, "not valid"),
        ({"backend": "llama"}, "unknown backend 'llama'"),
        ({"options": {"path": "/no/such/model"}}, "does not exist"),
        ({"options": {}}, "needs option path or model"),
        ({"options": {"model": "x", "temprature": 1}}, "unknown transformers options"),
        (
            {"backend": "openai", "options": {"base_url": "http://127.0.0.1:1/v1"}},
            "needs option model",
        ),
        (
            {
                "backend": "openai",
                "options": {
                    "base_url": "http://x",
                    "model": "m",
                    "api_key_env": "sk-abc123-secret",
                },
            },
            "must name an environment variable",
        ),
        ({"backend": "precomputed", "options": {}}, "needs option column"),
        ({"generation": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"generation": {"top_p": 1.5}}, "top_p"),
        ({"generation": {"prompt_template": "no placeholder"}}, "must use {prompt}"),
        ({"generation": {"prompt_template": "{prompt} {answer}"}}, "found ['answer', 'prompt']"),
        ({"generation": {"beams": 4}}, "unknown generation keys"),
        ({"baseline": "yes"}, "baseline must be"),
        ({"colour": "red"}, "unknown keys"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelSpecError, match=pytest.importorskip("re").escape(message)):
        parse_spec(spec(tmp_path, **overrides))


def test_registry_add_list_remove_round_trip(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.yaml")
    assert registry.load() == []
    first = parse_spec(spec(tmp_path, name="a", baseline=True, generation={"stop": "\n"}))
    second = parse_spec(
        {"name": "b", "backend": "precomputed", "options": {"column": "logged_answer"}}
    )
    registry.add(first)
    registry.add(second)
    assert [s.name for s in registry.load()] == ["a", "b"]
    assert registry.get("a") == first and registry.baseline() == first
    assert registry.get("a").generation.stop == ("\n",)
    with pytest.raises(ModelSpecError, match="already in"):
        registry.add(first)
    with pytest.raises(ModelSpecError, match="only one baseline"):
        registry.add(parse_spec(spec(tmp_path, name="c", baseline=True)))
    assert registry.remove("a") == first
    assert [s.name for s in registry.load()] == ["b"]
    with pytest.raises(ModelSpecError, match="'zzz' is not in"):
        registry.remove("zzz")


def test_hand_edited_registry_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  - {name: x, backend: transformers, options: {model: a}}\n"
        "  - {name: x, backend: transformers, options: {model: b}}\n"
    )
    with pytest.raises(ModelSpecError, match="'x' appears twice"):
        ModelRegistry(path).load()
    path.write_text("models: [{name: 'bad name', backend: openai}]\n")
    with pytest.raises(ModelSpecError, match=r"models\.yaml models\[0\]"):
        ModelRegistry(path).load()


def test_config_hash_follows_outputs_not_operations(tmp_path: Path) -> None:
    base = parse_spec(spec(tmp_path))
    bigger_batches = parse_spec(
        spec(tmp_path, options={"path": str(tmp_path / "m"), "batch_size": 64})
    )
    longer = parse_spec(spec(tmp_path, generation={"max_new_tokens": 65}))
    assert base.generation_config_hash == bigger_batches.generation_config_hash
    assert base.generation_config_hash != longer.generation_config_hash
    assert base.cache_key != bigger_batches.cache_key


def test_prompt_template_rendering() -> None:
    config = GenerationConfig()
    with_context = config.render("Who?", "Ada wrote it.")
    assert with_context == "Context: Ada wrote it.\nQuestion: Who?\nAnswer:"
    assert config.render("Who?", None) == "Question: Who?\nAnswer:"
    assert GenerationConfig(prompt_template="Q: {prompt}").render("x", "ignored") == "Q: x"
