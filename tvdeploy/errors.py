"""One root exception with specific subclasses.

The CLI turns any ``TvdeployError`` into one line ``error: <message>`` and exit 1; ``details``
holds further errors, shown only with ``-v`` (the CLI prints how many were left out).
Messages must never contain secret values.
"""

from __future__ import annotations


class TvdeployError(Exception):
    """An expected failure: bad input, refused operation, failed check, unreachable host."""

    exit_code = 1

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class InputFileError(TvdeployError):
    """A file given to tvdeploy is missing, unreadable or malformed."""


class ConfigError(TvdeployError):
    """The site file (or a release spec) is invalid; message names file, line and key path."""


class SecretError(TvdeployError):
    """A secret reference cannot be resolved (never includes the secret's value)."""


class ConnectionFailed(TvdeployError):
    """A peer (vCenter, node, registry) cannot be reached or refused us."""


class VerificationError(TvdeployError):
    """A signature, digest, certificate or host key did not verify."""


class RefusedError(TvdeployError):
    """An operation was refused on purpose (conflict, policy, replay, lock held)."""


def require_file(path: object, what: str = "file") -> None:
    """Raise InputFileError unless *path* is a readable regular file."""
    import os
    from pathlib import Path

    p = Path(str(path))
    if not p.exists():
        raise InputFileError(f"{p}: {what} not found")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, expected a {what}")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{p}: {what} is not readable")
