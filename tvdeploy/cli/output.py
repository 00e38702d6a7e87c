"""The one module that owns the terminal: consoles, JSON output, tables, confirmation, reporters.

Output policy (every command group, through these functions and ``reporter()``):

- stdout carries results. Under ``--json`` it carries exactly one JSON document (or, for the
  commands whose result is an event stream, ``vm apply``/``vm destroy``, JSON lines) and nothing
  else, so ``tvdeploy ... --json | jq`` always parses.
- stderr carries everything for people: progress (hidden by ``--quiet`` and ``--json``), notes
  (``note: ...``, hidden by ``--quiet`` only) and warnings (``warning: ...``, never hidden).
  Under ``--json`` notes and warnings stay **plain text lines on stderr**, not JSON: a warning
  such as "recorded new host key" is a trust decision the operator must see, and scripts that
  parse stdout are not disturbed by it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from tvdeploy.cli.options import OPTIONS
from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.reporting import Reporter


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


def note(message: str) -> None:
    """Something the operator should know that is not a problem: stderr, also under --json."""
    if OPTIONS.quiet:
        return
    print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Something the operator must read: stderr, whatever --json or --quiet say."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


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
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    console = _console()
    if not console.is_terminal:
        # A pipe or a file has no width: never cut a value (a digest, a time) to fit 80 columns.
        from rich.console import Console

        console = Console(no_color=OPTIONS.no_color, highlight=False, soft_wrap=True, width=4096)
    console.print(t)


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


def reporter(*, events: bool = False, bars_only: bool = False) -> Reporter:
    """The Reporter every command hands to domain code (the output policy above).

    Under --json: warnings on stderr, progress nowhere; with *events* (a command whose --json
    output is its event stream) the events go to stdout as JSON lines. Otherwise rich progress
    on a terminal, plain lines in a pipe; with *bars_only* (reading a bundle) a pipe gets only
    warnings: the command's one line of result (or error) is all there is to say."""
    from tvdeploy.cli.reporters import JsonLinesReporter, PlainReporter, RichReporter

    if OPTIONS.json:
        return JsonLinesReporter() if events else PlainReporter(quiet=True)
    if sys.stderr.isatty() and not OPTIONS.quiet:
        return RichReporter(_console(stderr=True))
    return PlainReporter(quiet=OPTIONS.quiet or bars_only)
