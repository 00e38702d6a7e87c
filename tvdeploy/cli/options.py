"""Global options accepted in any position: --json, --yes, -v/--verbose, -q/--quiet, --no-color.

They are taken out of argv before typer parses the rest, so `tvdeploy --json site show X` and
`tvdeploy site show X --json` mean the same (ARCHITECTURE.md, CLI conventions).
"""

from __future__ import annotations

from dataclasses import dataclass

_FLAGS = {
    "--json": "json",
    "--yes": "yes",
    "-y": "yes",
    "--verbose": "verbose",
    "-v": "verbose",
    "--quiet": "quiet",
    "-q": "quiet",
    "--no-color": "no_color",
}


@dataclass
class GlobalOptions:
    json: bool = False
    yes: bool = False
    verbose: int = 0
    quiet: bool = False
    no_color: bool = False


OPTIONS = GlobalOptions()


def split_global_options(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """Return the global options found anywhere in *argv* (before a ``--``) and the rest."""
    opts = GlobalOptions()
    rest: list[str] = []
    passthrough = False
    for arg in argv:
        if passthrough:
            rest.append(arg)
            continue
        if arg == "--":
            passthrough = True
            rest.append(arg)
            continue
        if arg in _FLAGS:
            name = _FLAGS[arg]
            if name == "verbose":
                opts.verbose += 1
            else:
                setattr(opts, name, True)
            continue
        if len(arg) > 2 and arg.startswith("-v") and set(arg[1:]) == {"v"}:
            opts.verbose += len(arg) - 1
            continue
        rest.append(arg)
    return opts, rest
