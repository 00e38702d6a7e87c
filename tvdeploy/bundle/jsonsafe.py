"""Strict, bounded JSON parsing for documents read from a bundle or a trust root.

Refuses what ``json.loads`` lets through and an attacker could use: duplicate keys (two readers
could disagree on which one wins), NaN/Infinity, non-UTF-8 bytes, and nesting deep enough to
exhaust the stack (the C scanner raises RecursionError, turned into a plain refusal). Size is
bounded by the caller before any byte is read.
"""

from __future__ import annotations

import json
from typing import Any


class JsonError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not valid JSON")


def loads(data: bytes, limit: int | None = None) -> Any:
    if limit is not None and len(data) > limit:
        raise JsonError(f"larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonError("not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except JsonError:
        raise
    except (ValueError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise JsonError(f"malformed JSON: {msg}") from None
