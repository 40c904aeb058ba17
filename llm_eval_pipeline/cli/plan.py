"""``llm-eval run --dry-run``: what a run over days × models would do and cost, from the
dataset's lengths (``core.cost``), without writing anything."""

from __future__ import annotations

from collections.abc import Sequence

from llm_eval_pipeline.cli.run import CliError, RunRequest
from llm_eval_pipeline.core.cost import CHARS_PER_TOKEN, Estimate, estimate_partition
from llm_eval_pipeline.core.dataset import DatasetReadError, discover_sources, ingest
from llm_eval_pipeline.core.models import ModelRegistry, ModelSpec
from llm_eval_pipeline.core.schema import Col
from llm_eval_pipeline.settings import Settings

# Backends whose outputs are read, not generated: no generation tokens or cost.
NOT_GENERATED = ("precomputed",)


def dry_run(settings: Settings, request: RunRequest) -> int:
    """Print the partitions, examples, tokens expected and cost of a run; write nothing."""
    specs = _models(settings, request.models)
    print(
        f"Dry run, nothing is written: {len(request.days)} days "
        f"({request.days[0]} to {request.days[-1]}) × {len(specs)} models = "
        f"{len(request.days) * len(specs)} day×model partitions."
    )
    print(f"\n{'day':<12}{'examples':>10}{'quarantined':>13}")
    per_model: dict[str, list[Estimate]] = {s.name: [] for s in specs}
    for day in request.days:
        try:
            sources = discover_sources(
                settings.dataset, settings.incoming, day, list(settings.allowed_data_roots)
            )
        except DatasetReadError as exc:
            print(f"{day!s:<12}{'-':>10}{'-':>13}  {exc}")
            continue
        result = ingest(
            sources, day, settings.dataset_name, settings.max_field_chars, settings.default_task
        )
        print(f"{day!s:<12}{result.examples.num_rows:>10}{result.quarantined.num_rows:>13}")
        columns = result.examples.select([Col.PROMPT, Col.CONTEXT, Col.REFERENCES]).to_pydict()
        for spec in specs:
            per_model[spec.name].append(
                estimate_partition(
                    columns[Col.PROMPT],
                    columns[Col.CONTEXT],
                    columns[Col.REFERENCES],
                    spec.generation.render,
                    spec.generation.max_new_tokens,
                    spec.prices,
                )
            )
    print(
        f"\n{'model':<20}{'backend':<13}{'partitions':>11}{'examples':>10}{'prompt tok':>12}"
        f"{'output tok (expected / at most)':>33}{'cost USD (expected / at most)':>31}"
    )
    expected = most = 0.0
    unpriced = []
    for spec in specs:
        estimates = per_model[spec.name]
        generated = spec.backend not in NOT_GENERATED
        prompt = sum(e.prompt_tokens for e in estimates) if generated else 0
        output = sum(e.output_tokens for e in estimates) if generated else 0
        output_max = sum(e.output_tokens_max for e in estimates) if generated else 0
        if not generated:
            cost = "none: outputs are read"
        elif spec.prices is None:
            unpriced.append(spec.name)
            cost = "no prices"
        else:
            low = sum(e.cost_usd or 0.0 for e in estimates)
            high = sum(e.cost_usd_max or 0.0 for e in estimates)
            expected, most = expected + low, most + high
            cost = f"{low:,.2f} / {high:,.2f}"
        print(
            f"{spec.name:<20}{spec.backend:<13}{len(estimates):>11}"
            f"{sum(e.examples for e in estimates):>10}{prompt:>12,}"
            f"{f'{output:,} / {output_max:,}':>33}{cost:>31}"
        )
    print(f"\nTotal generation cost: expected ${expected:,.2f}, at most ${most:,.2f}.")
    if unpriced:
        print(
            f"No prices for {', '.join(unpriced)}: `llm-eval models add NAME ... --replace "
            "--price-per-1k-prompt-tokens USD --price-per-1k-output-tokens USD`."
        )
    print(
        f"Tokens are estimated at {CHARS_PER_TOKEN:g} characters per token; outputs from "
        "each example's first reference, at most max_new_tokens."
    )
    return 0


def _models(settings: Settings, names: Sequence[str]) -> list[ModelSpec]:
    specs = ModelRegistry(settings.models_yaml).load()
    unknown = [n for n in names if n not in {s.name for s in specs}]
    if unknown:
        raise CliError(f"models {unknown} are not in {settings.models_yaml}")
    return [s for s in specs if not names or s.name in names]
