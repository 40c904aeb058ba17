"""Model identities. A model's name is its partition key, so it is restricted to
letters, digits and ``-_.``."""

from __future__ import annotations

import re

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ModelSpecError(ValueError):
    """A model spec or name the registry cannot accept."""


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise ModelSpecError(
            f"model name {name!r} is not valid: use letters, digits and -_. "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name
