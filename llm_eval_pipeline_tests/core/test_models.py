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


def test_prices_are_part_of_a_spec_but_not_of_its_identity() -> None:
    raw = {"name": "paid", "backend": "precomputed", "options": {"column": "answer"}}
    free = parse_spec(raw)
    paid = parse_spec({**raw, "price_per_1k_prompt_tokens": 0.5, "price_per_1k_output_tokens": 1.5})
    assert free.prices is None and paid.prices is not None
    assert paid.prices.cost(2000, 1000) == pytest.approx(2.5)
    assert parse_spec(paid.to_dict()) == paid, "round trip through models.yaml"
    assert paid.generation_config_hash == free.generation_config_hash
    assert paid.cache_key == free.cache_key
    with pytest.raises(ModelSpecError, match="price_per_1k_prompt_tokens is set but"):
        parse_spec({**raw, "price_per_1k_prompt_tokens": 0.5})
    with pytest.raises(ModelSpecError, match="price_per_1k_output_tokens must be a number"):
        parse_spec(
            {**raw, "price_per_1k_prompt_tokens": 0.5, "price_per_1k_output_tokens": "cheap"}
        )


def test_a_partition_estimate_counts_templated_prompts_and_capped_outputs() -> None:
    from llm_eval_pipeline.core.cost import Prices, estimate_partition

    estimate = estimate_partition(
        ["abcd" * 10, "xy"],
        ["ctx!" * 5, None],
        [["1234" * 3], []],  # the second has no reference: max_new_tokens expected
        lambda prompt, context: f"{context or ''}\n{prompt}",
        8,
        Prices(1.0, 2.0),
    )
    # prompts: 20 + 1 + 40 = 61 chars -> 16 tokens; "\nxy" = 3 chars -> 1 token
    assert (estimate.examples, estimate.prompt_tokens) == (2, 17)
    assert (estimate.output_tokens, estimate.output_tokens_max) == (3 + 8, 16)
    assert estimate.cost_usd == pytest.approx((17 * 1.0 + 11 * 2.0) / 1000)
    assert estimate.cost_usd_max == pytest.approx((17 + 32) / 1000)
    free = estimate_partition(["a"], [None], [None], lambda p, c: p, 4, None)
    assert free.cost_usd is None and free.output_tokens == 4
