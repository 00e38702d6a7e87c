"""A defensive check that no secret value reaches an audit record.

Records are built from names, digests and messages that by design hold no secret; this check
catches the mistake anyway: a ``Secret`` object, its masked text, a PEM private key, or any value
that a ``Secret`` held in this process (tvdeploy.config.secrets tracks them).
"""

from __future__ import annotations

from typing import Any

from tvdeploy.config.secrets import Secret, seen_secret_values

_MARKERS = ("Secret(***)", "PRIVATE KEY-----")


def _string_leaks(text: str, values: frozenset[str]) -> bool:
    return any(m in text for m in _MARKERS) or any(v in text for v in values)


def find_secret(value: Any, path: str = "$") -> str | None:
    """The key path of the first value in *value* that looks like a secret, else None."""
    return _find(value, path, seen_secret_values())


def _find(value: Any, path: str, values: frozenset[str]) -> str | None:
    if isinstance(value, Secret):
        return path
    if isinstance(value, str):
        return path if _string_leaks(value, values) else None
    if isinstance(value, dict):
        for key, item in value.items():
            hit = _find(str(key), f"{path} (key)", values) or _find(item, f"{path}.{key}", values)
            if hit:
                return hit
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            hit = _find(item, f"{path}[{i}]", values)
            if hit:
                return hit
    return None


def redact(text: str) -> str:
    """*text* with every tracked secret value replaced by ``***`` (for error messages, which
    must be recorded even when a bug put a secret in one)."""
    for v in sorted(seen_secret_values(), key=len, reverse=True):
        text = text.replace(v, "***")
    return text
