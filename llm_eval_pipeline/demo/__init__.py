"""The demo: its dataset (shipped with the package) and the builder of its tiny models."""

from importlib import resources

DEMO_DATASET_NAME = "demo_eval"


def demo_dataset_path() -> str:
    """The shipped demo dataset, a JSON Lines file."""
    return str(resources.files("llm_eval_pipeline.demo") / "data" / f"{DEMO_DATASET_NAME}.jsonl")
