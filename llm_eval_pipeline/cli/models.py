"""``llm-eval models add | list | remove``: the model registry (``models.yaml``)."""

from __future__ import annotations

import argparse

import yaml

from llm_eval_pipeline.cli.run import CliError
from llm_eval_pipeline.core.models import (
    ModelRegistry,
    parse_spec,
)
from llm_eval_pipeline.settings import Settings


def models_command(settings: Settings, args: argparse.Namespace) -> int:
    registry = ModelRegistry(settings.models_yaml)
    if args.models_command == "list":
        specs = registry.load()
        if not specs:
            print(f"No models in {registry.path}")
        for spec in specs:
            source = next(
                (str(spec.options[k]) for k in ("path", "model", "column") if k in spec.options), ""
            )
            flag = "  (baseline)" if spec.baseline else ""
            print(
                f"{spec.name:<20} {spec.backend:<12} {spec.generation_config_hash}  {source}{flag}"
            )
        return 0
    if args.models_command == "remove":
        registry.remove(args.name)
        print(f"Removed {args.name} from {registry.path}; its tables and partitions are kept.")
        return 0
    spec = parse_spec(spec_from_args(args), "llm-eval models add")
    registry.add(spec, replace=args.replace)
    print(
        f"Added {spec.name} ({spec.backend}) to {registry.path}. With `make ui` running, the "
        f"new-model sensor backfills it over the last {settings.backfill_days} days; "
        f"or run `llm-eval run --models {spec.name} --start YYYY-MM-DD`."
    )
    return 0


def spec_from_args(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    named = {
        "path": args.path,
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "column": args.column,
    }
    options.update({k: v for k, v in named.items() if v is not None})
    generation = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "do_sample": args.do_sample,
        "seed": args.seed,
        "stop": args.stop,
        "prompt_template": args.prompt_template,
    }
    return {
        "name": args.name,
        "backend": args.backend,
        "options": options,
        "generation": {k: v for k, v in generation.items() if v is not None},
        "baseline": args.baseline,
        "price_per_1k_prompt_tokens": args.price_per_1k_prompt_tokens,
        "price_per_1k_output_tokens": args.price_per_1k_output_tokens,
    }
