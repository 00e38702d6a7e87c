"""How domain code reports progress without knowing about terminals.

Domain code receives a ``Reporter`` and calls it; the CLI supplies a rich implementation for a
terminal, a plain-lines one for pipes and a JSON-lines one for ``--json`` event streams.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def info(self, message: str) -> None:
        """A line of human-readable progress (hidden under --quiet and --json)."""

    def warn(self, message: str) -> None:
        """Something the operator should read, e.g. a clock offset; never fatal."""

    def event(self, kind: str, **fields: Any) -> None:
        """A structured event (one JSON line under --json)."""

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        """Start a progress task (a bar or a line) identified by *key*; *unit* "bytes" shows
        sizes and rates, anything else counts."""

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        """Advance task *key*; *description* may replace its text."""

    def done(self, key: str, description: str | None = None) -> None:
        """Finish task *key*."""


class NullReporter:
    """A reporter that drops everything: for tests and library use."""

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def event(self, kind: str, **fields: Any) -> None:
        pass

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, key: str, amount: int = 1, description: str | None = None) -> None:
        pass

    def done(self, key: str, description: str | None = None) -> None:
        pass
