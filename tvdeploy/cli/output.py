"""The one module that owns the terminal: consoles, JSON output, tables, confirmation, reporters."""

from __future__ import annotations

import json
import sys
from typing import Any

from tvdeploy.cli.options import OPTIONS
from tvdeploy.errors import RefusedError


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, no_color=OPTIONS.no_color, highlight=False, soft_wrap=True)


def out(message: str = "", markup: bool = False) -> None:
    """A line on stdout for people (suppressed under --json; --quiet keeps results)."""
    if OPTIONS.json:
        return
    _console().print(message, markup=markup)


def info(message: str) -> None:
    """Progress chatter on stderr: hidden by --quiet and --json."""
    if OPTIONS.quiet or OPTIONS.json:
        return
    _console(stderr=True).print(message, markup=False)


def warn(message: str) -> None:
    if OPTIONS.quiet:
        return
    print(f"warning: {message}", file=sys.stderr)


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (the only thing on stdout under --json)."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def emit_json_line(document: Any) -> None:
    sys.stdout.write(json.dumps(document, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    _console().print(t)


def stdin_is_terminal() -> bool:
    """False also when there is no standard input at all (CI, cron: sys.stdin is None)."""
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(question: str) -> None:
    """Ask before a destructive change; --yes answers for the operator. Without a terminal and
    without --yes the change is refused rather than assumed."""
    if OPTIONS.yes:
        return
    if not stdin_is_terminal():
        raise RefusedError(f"{question} -- refused: no terminal to confirm on; pass --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise RefusedError("cancelled by the operator")


def reporter() -> Any:
    """A Reporter for domain code: JSON lines under --json, rich progress on a terminal,
    plain lines otherwise."""
    from tvdeploy.cli.reporters import JsonLinesReporter, PlainReporter, RichReporter

    if OPTIONS.json:
        return JsonLinesReporter()
    if sys.stderr.isatty() and not OPTIONS.quiet:
        return RichReporter(_console(stderr=True))
    return PlainReporter(quiet=OPTIONS.quiet)
