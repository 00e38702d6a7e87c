"""Resolve secret references (``env:VAR`` or ``file:PATH``) at the moment a command needs them.

The value is wrapped in ``Secret`` whose repr/str never show it, so a secret that ends up in a
log line, plan or exception prints as ``***``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tvdeploy.errors import SecretError

# Every secret value this process has held, so the audit recorder can refuse a record that
# carries one (tvdeploy.audit.secretscan). Values shorter than this cannot be told from words.
MIN_TRACKED_LEN = 8
_SEEN: set[str] = set()


def seen_secret_values() -> frozenset[str]:
    return frozenset(_SEEN)


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= MIN_TRACKED_LEN:
            _SEEN.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def resolve_secret(ref: str, key_path: str, base_dir: Path | None = None) -> Secret:
    """Return the secret named by *ref*; errors name the key path and the reference only."""
    if ref.startswith("env:"):
        var = ref[4:]
        value = os.environ.get(var)
        if value is None:
            raise SecretError(f"{key_path}: environment variable {var} is not set")
        return Secret(value)
    if ref.startswith("file:"):
        p = Path(ref[5:]).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"{key_path}: secret file not found: {p}") from None
        except OSError as exc:
            raise SecretError(f"{key_path}: cannot read secret file {p}: {exc.strerror}") from None
        return Secret(text.rstrip("\r\n"))
    raise SecretError(f"{key_path}: not a secret reference (use env:VAR or file:PATH)")
