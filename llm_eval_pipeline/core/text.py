"""Text that Arrow, Delta, MLflow and the dashboard can store: valid Unicode.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``, common where text was cut in the
middle of an emoji); Python decodes it into a ``str`` that cannot be encoded as UTF-8, and
pyarrow refuses it. Input rows holding one are quarantined (``core.dataset``); text the
pipeline produces itself (model outputs, error messages) has each such code point replaced
by U+FFFD, the Unicode replacement character."""

from __future__ import annotations

import re
from typing import Any

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` as a ``\\uXXXX`` escape, or None."""
    match = LONE_SURROGATE.search(text)
    return f"\\u{ord(match.group()):04x}" if match else None


def valid_unicode(text: str | None) -> str | None:
    """``text`` with every lone surrogate replaced by U+FFFD (None stays None)."""
    if text is None or not LONE_SURROGATE.search(text):
        return text
    return LONE_SURROGATE.sub(REPLACEMENT, text)


def escaped(text: str) -> str:
    """``text`` with every lone surrogate written as its ``\\uXXXX`` escape: storable,
    and still saying what was there (for messages and field names)."""
    return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def first_invalid_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """In a parsed JSON value, the first string (key or value, at any depth) holding a
    lone surrogate: its field path (``metadata.tags[2]``, a key's surrogates escaped) and
    the surrogate's escape."""
    if isinstance(value, str):
        found = lone_surrogate(value)
        return (path, found) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{escaped(str(key))}" if path else escaped(str(key))
            found = lone_surrogate(str(key))
            if found:
                return where, found
            inner = first_invalid_text(item, where)
            if inner:
                return inner
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            inner = first_invalid_text(item, f"{path}[{i}]")
            if inner:
                return inner
    return None
