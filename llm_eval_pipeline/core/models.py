"""Model specs and the model registry (``models.yaml``).

A spec names a model (its name is the ``model_id`` partition key), the backend that runs
it with that backend's options, and the generation parameters::

    models:
      - name: tiny-qa
        backend: transformers          # transformers | openai | precomputed
        options: {path: /abs/path/to/model, dtype: float32, batch_size: 16}
        generation: {max_new_tokens: 32, stop: ["\\n"],
                     prompt_template: "Context: {context}\\nQuestion: {prompt}\\nAnswer:"}
        baseline: true
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import tempfile
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llm_eval_pipeline.core.cost import PRICE_KEYS, Prices, parse_prices
from llm_eval_pipeline.core.errors import UserError
from llm_eval_pipeline.core.file_lock import exclusive

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_PROMPT_TEMPLATE = "Context: {context}\nQuestion: {prompt}\nAnswer:"
TEMPLATE_FIELDS = frozenset({"prompt", "context"})


class ModelSpecError(UserError, ValueError):
    """A model spec or name the registry cannot accept."""


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise ModelSpecError(
            f"model name {name!r} is not valid: use letters, digits and -_. "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


@dataclass(frozen=True)
class BackendOptions:
    """The options a backend accepts: which are required (one of each group), which are
    allowed, and which identify the model's outputs (and so enter the config hash)."""

    required_one_of: tuple[tuple[str, ...], ...]
    allowed: frozenset[str]
    identity: frozenset[str]
    paths: frozenset[str] = frozenset()


BACKENDS: dict[str, BackendOptions] = {
    "transformers": BackendOptions(
        required_one_of=(("path", "model"),),
        allowed=frozenset(
            {"path", "model", "revision", "dtype", "device", "batch_size", "trust_remote_code"}
        ),
        identity=frozenset({"path", "model", "revision", "dtype", "trust_remote_code"}),
        paths=frozenset({"path"}),
    ),
    "openai": BackendOptions(
        required_one_of=(("base_url",), ("model",)),
        allowed=frozenset(
            {
                "base_url",
                "model",
                "api",
                "api_key_env",
                "max_concurrency",
                "timeout_s",
                "max_retries",
                "backoff_s",
                "logprobs",
            }
        ),
        identity=frozenset({"base_url", "model", "api"}),
    ),
    "precomputed": BackendOptions(
        required_one_of=(("column",),),
        allowed=frozenset({"column"}),
        identity=frozenset({"column"}),
    ),
}


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    do_sample: bool = False
    seed: int = 0
    stop: tuple[str, ...] = ()
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE

    def render(self, prompt: str, context: str | None) -> str:
        """The model's input text for one example. An absent context renders as empty
        text, and the lines left empty by it are dropped."""
        text = self.prompt_template.format(prompt=prompt, context=context or "")
        if context:
            return text
        lines = [line for line in text.split("\n") if line.strip() not in ("", "Context:")]
        return "\n".join(lines)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    baseline: bool = False
    prices: Prices | None = None

    def to_dict(self) -> dict[str, Any]:
        generation = asdict(self.generation)
        generation["stop"] = list(self.generation.stop)
        data: dict[str, Any] = {
            "name": self.name,
            "backend": self.backend,
            "options": dict(self.options),
            "generation": generation,
        }
        if self.baseline:
            data["baseline"] = True
        if self.prices is not None:
            data.update(self.prices.to_dict())
        return data

    @property
    def generation_config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of what determines the outputs: backend,
        its identifying options and the generation parameters."""
        identity = BACKENDS[self.backend].identity
        payload = {
            "backend": self.backend,
            "options": {k: v for k, v in sorted(self.options.items()) if k in identity},
            "generation": self.to_dict()["generation"],
        }
        return _hash(payload)

    @property
    def cache_key(self) -> str:
        """Identifies a loaded model: the whole spec, operational options included (its
        prices left out: they change no output)."""
        spec = {k: v for k, v in self.to_dict().items() if k not in PRICE_KEYS}
        return _hash({"spec": spec})


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_spec(raw: Mapping[str, Any], where: str = "model spec") -> ModelSpec:
    """Validate one spec mapping; errors name ``where`` and the offending key."""
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"name", "backend", "options", "generation", "baseline", *PRICE_KEYS}
    if unknown:
        raise ModelSpecError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        name = validate_model_name(raw.get("name"))  # type: ignore[arg-type]
    except ModelSpecError as exc:
        raise ModelSpecError(f"{where}: {exc}") from exc
    where = f"{where} {name!r}"
    backend = raw.get("backend")
    if backend not in BACKENDS:
        raise ModelSpecError(f"{where}: unknown backend {backend!r} (one of {sorted(BACKENDS)})")
    options = dict(raw.get("options") or {})
    rules = BACKENDS[backend]
    extra = set(options) - rules.allowed
    if extra:
        raise ModelSpecError(
            f"{where}: unknown {backend} options {sorted(extra)} (allowed: {sorted(rules.allowed)})"
        )
    for group in rules.required_one_of:
        if not any(options.get(k) not in (None, "") for k in group):
            raise ModelSpecError(
                f"{where}: the {backend} backend needs option {' or '.join(group)}"
            )
    for key in rules.paths:
        if key in options:
            path = Path(str(options[key])).expanduser()
            if not path.exists():
                raise ModelSpecError(f"{where}: option {key} {str(path)!r} does not exist")
            options[key] = str(path.resolve())
    env_name = options.get("api_key_env")
    if env_name is not None and not ENV_NAME_PATTERN.match(str(env_name)):
        raise ModelSpecError(
            f"{where}: api_key_env must name an environment variable, not hold a key"
        )
    baseline = raw.get("baseline", False)
    if not isinstance(baseline, bool):
        raise ModelSpecError(f"{where}: baseline must be true or false")
    try:
        prices = parse_prices(raw, where)
    except ValueError as exc:
        raise ModelSpecError(str(exc)) from exc
    return ModelSpec(
        name, backend, options, _generation(raw.get("generation") or {}, where), baseline, prices
    )


def _generation(raw: Mapping[str, Any], where: str) -> GenerationConfig:
    if not isinstance(raw, Mapping):
        raise ModelSpecError(f"{where}: generation must be a mapping")
    known = set(GenerationConfig.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ModelSpecError(f"{where}: unknown generation keys {sorted(unknown)}")
    values = dict(raw)
    if isinstance(values.get("stop"), str):
        values["stop"] = [values["stop"]]
    config = GenerationConfig(
        **{k: tuple(v) if k == "stop" else v for k, v in values.items()}  # type: ignore[arg-type]
    )
    checks = [
        (
            isinstance(config.max_new_tokens, int) and config.max_new_tokens >= 1,
            "max_new_tokens must be a whole number >= 1",
        ),
        (
            isinstance(config.temperature, int | float) and config.temperature >= 0,
            "temperature must be >= 0",
        ),
        (
            isinstance(config.top_p, int | float) and 0 < config.top_p <= 1,
            "top_p must be in (0, 1]",
        ),
        (isinstance(config.do_sample, bool), "do_sample must be true or false"),
        (isinstance(config.seed, int), "seed must be a whole number"),
        (all(isinstance(s, str) and s for s in config.stop), "stop must be non-empty strings"),
        (isinstance(config.prompt_template, str), "prompt_template must be a string"),
    ]
    for ok, message in checks:
        if not ok:
            raise ModelSpecError(f"{where}: {message}")
    fields = {f for _, f, _, _ in string.Formatter().parse(config.prompt_template) if f is not None}
    if "prompt" not in fields or fields - TEMPLATE_FIELDS:
        raise ModelSpecError(
            f"{where}: prompt_template must use {{prompt}} and may use {{context}}, "
            f"found {sorted(fields)}"
        )
    return config


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelRegistry:
    """The models listed in one ``models.yaml``. A missing file is an empty registry."""

    path: Path

    def load(self) -> list[ModelSpec]:
        if not self.path.exists():
            return []
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ModelSpecError(f"{self.path}: not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("models", []), list):
            raise ModelSpecError(f"{self.path}: expected `models:` with a list of model specs")
        specs = [
            parse_spec(raw, f"{self.path} models[{i}]")
            for i, raw in enumerate(data.get("models") or [])
        ]
        _check_registry(specs, str(self.path))
        return specs

    def get(self, name: str) -> ModelSpec:
        for spec in self.load():
            if spec.name == name:
                return spec
        raise ModelSpecError(f"model {name!r} is not in {self.path}")

    def baseline(self) -> ModelSpec | None:
        return next((s for s in self.load() if s.baseline), None)

    def add(self, spec: ModelSpec, replace: bool = False) -> None:
        with self._locked():
            specs = self.load()
            if any(s.name == spec.name for s in specs):
                if not replace:
                    raise ModelSpecError(f"model {spec.name!r} is already in {self.path}")
                specs = [s for s in specs if s.name != spec.name]
            self._save([*specs, spec])

    def remove(self, name: str) -> ModelSpec:
        with self._locked():
            specs = self.load()
            found = [s for s in specs if s.name == name]
            if not found:
                raise ModelSpecError(f"model {name!r} is not in {self.path}")
            self._save([s for s in specs if s.name != name])
        return found[0]

    def _locked(self) -> AbstractContextManager[None]:
        """Read-modify-write of the file happens under this lock: processes adding at
        once would otherwise each write back what they read and lose the others' models."""
        return exclusive(self.path.with_name(f".{self.path.name}.lock"))

    def _save(self, specs: list[ModelSpec]) -> None:
        """Write the whole file under a unique temporary name, then rename it over the
        old one, so a reader sees the old file or the new one, never a part."""
        _check_registry(specs, str(self.path))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump({"models": [s.to_dict() for s in specs]}, sort_keys=False)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _check_registry(specs: list[ModelSpec], where: str) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ModelSpecError(f"{where}: model name {spec.name!r} appears twice")
        seen.add(spec.name)
    baselines = [s.name for s in specs if s.baseline]
    if len(baselines) > 1:
        raise ModelSpecError(f"{where}: only one baseline model allowed, found {baselines}")
