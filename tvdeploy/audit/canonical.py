"""Canonical JSON: the one byte form of a record that hashes and signatures are computed over.

Sorted keys, no insignificant whitespace, UTF-8 (not ``\\u`` escapes), and no floats: a float's
text form differs between implementations, so a record holding one could not be re-verified
byte for byte elsewhere. Integers, strings, booleans, null, lists and string-keyed objects only.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 16


class CanonicalError(ValueError):
    """A value that has no canonical form (a float, a non-string key, an unknown type)."""


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalError(f"{path}: nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed in canonical JSON")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object keys must be strings, got {type(key).__name__}")
            _check(item, f"{path}.{key}", depth + 1)
        return
    raise CanonicalError(f"{path}: {type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of *value*; raises CanonicalError for what has none."""
    _check(value, "$", 0)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def is_canonical(line: bytes) -> bool:
    """True when *line* parses and re-serializes to exactly the same bytes."""
    try:
        return canonical_json(json.loads(line)) == line
    except (ValueError, RecursionError):
        return False
