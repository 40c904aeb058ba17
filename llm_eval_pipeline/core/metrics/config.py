"""Which metrics run and with what settings; hashed into ``metric_config_hash``.

A field marked :data:`OPERATIONAL` changes how a metric is computed (where a cache lives,
batch sizes, timeouts, retries, concurrency) but not its value, and stays out of the hash:
the same metrics under another home folder or timeout keep the same hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from llm_eval_pipeline.core.metrics.calibration import HALLUCINATION_WEIGHTS
from llm_eval_pipeline.core.metrics.registry import SCORED_GROUPS as GROUPS

OPERATIONAL = {"operational": True}


def _operational(default: Any) -> Any:
    return field(default=default, metadata=OPERATIONAL)


DEFAULT_GROUPS: tuple[str, ...] = ("rouge", "correctness", "perplexity", "hallucination")


@dataclass(frozen=True)
class JudgeConfig:
    """An OpenAI-compatible judge endpoint for ``judge_correctness`` (off by default)."""

    base_url: str
    model: str
    api_key_env: str | None = _operational(None)
    cache_dir: str | None = _operational(None)
    timeout_s: float = _operational(30.0)
    max_retries: int = _operational(3)
    max_concurrency: int = _operational(4)


@dataclass(frozen=True)
class MetricConfig:
    groups: tuple[str, ...] = DEFAULT_GROUPS
    rouge_use_stemmer: bool = True
    rouge_split_sentences: bool = False
    correctness_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "reference_token_recall": 0.6,
            "token_f1": 0.2,
            "semantic_similarity": 0.2,
        }
    )
    embedding_model: str | None = None  # a SentenceTransformer path; None: all-MiniLM-L6-v2
    embedding_batch_size: int = _operational(64)
    perplexity_batch_size: int = _operational(8)
    perplexity_stride: int | None = None  # None: half the model's context
    scorer_model: str | None = None  # transformers path to score models without their own
    hallucination_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(HALLUCINATION_WEIGHTS)
    )
    correctness_penalty: float = 1.0
    nli_model: str | None = None
    judge: JudgeConfig | None = None

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown metric groups {sorted(unknown)} (choose from {GROUPS})")
        if "judge" in self.groups and self.judge is None:
            raise ValueError("the judge group needs a judge endpoint (JudgeConfig)")

    def enabled(self, group: str) -> bool:
        return group in self.groups

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data

    @property
    def hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the fields that change a metric's value
        (every field not marked :data:`OPERATIONAL`)."""
        text = json.dumps(_identity(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _identity(config: Any) -> Any:
    if not is_dataclass(config):
        return list(config) if isinstance(config, tuple) else config
    return {
        f.name: _identity(getattr(config, f.name))
        for f in fields(config)
        if not f.metadata.get("operational")
    }
