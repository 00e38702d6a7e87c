"""Helpers shared by command modules: loading the site file, plan exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tvdeploy.config.site import Site

SITE_ARG_HELP = "The site file (site.yaml)."


def site_argument() -> typer.models.ArgumentInfo:  # type: ignore[name-defined]
    return typer.Argument(..., help=SITE_ARG_HELP, show_default=False)


def load_site(path: Path) -> Site:
    from tvdeploy.config.load import load_site as _load

    return _load(path)


def plan_exit(changes: bool, detailed: bool) -> None:
    """Terraform's convention: with --detailed-exitcode, 2 when something would change."""
    if detailed and changes:
        raise typer.Exit(2)
