"""`llm-eval run --dry-run`: the partitions, examples, tokens and cost a run would take,
from the dataset's lengths, with nothing written."""

import datetime as dt
import json
from pathlib import Path

from llm_eval_pipeline.cli.run import latest_day
from llm_eval_pipeline.core.cost import Prices, estimate_partition
from llm_eval_pipeline.core.models import GenerationConfig
from llm_eval_pipeline_tests.conftest import write_jsonl
from llm_eval_pipeline_tests.processes import capitals_dataset, environment, llm_eval


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = capitals_dataset(home)
    end = latest_day()
    start = end - dt.timedelta(days=2)
    extra = [{"prompt": "A much longer question about a river? " * 5, "references": ["Nile"]},
             {"prompt": "", "references": ["bad row"]}]  # fmt: skip
    write_jsonl(home / "incoming" / str(end) / "more.jsonl", extra)
    env = environment(home)
    llm_eval(env, "models", "add", "logged", "--backend", "precomputed", "--column", "right")
    llm_eval(env, "models", "add", "api", "--backend", "openai", "--base-url",
             "http://127.0.0.1:9/v1", "--model", "m", "--max-new-tokens", "16",
             "--price-per-1k-prompt-tokens", "1", "--price-per-1k-output-tokens", "4")  # fmt: skip
    out = llm_eval(env, "run", "--dataset", str(data), "--start", str(start), "--dry-run")

    assert "3 days" in out and "× 2 models = 6 day×model partitions" in out
    days = {line.split()[0]: line.split()[1:3] for line in out.splitlines()
            if line[:4].isdigit()}  # fmt: skip
    assert days[str(start)] == ["4", "0"] and days[str(end)] == ["5", "1"], out
    # the api model's cost: the same estimate core.cost makes, at its prices
    rows = [line.split() for line in out.splitlines() if line.startswith("api ")]
    ((_, _, partitions, examples, *_),) = rows
    assert (partitions, examples) == ("3", "13")
    capitals = [json.loads(x) for x in data.read_text().splitlines()]
    one = [(c["prompt"], None, c["references"]) for c in capitals]
    days_rows = [one, one, [*one, (extra[0]["prompt"].strip(), None, ["Nile"])]]
    render = GenerationConfig().render
    cost = sum(
        estimate_partition(*zip(*r, strict=True), render, 16, Prices(1.0, 4.0)).cost_usd
        for r in days_rows
    )
    assert f"expected ${cost:,.2f}" in out, out
    assert "logged" in out and "none: outputs are read" in out
    assert not (home / "delta").exists() and not (home / "mlruns").exists()
