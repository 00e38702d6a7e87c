"""tvdeploy registry status SITE"""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

registry_app = typer.Typer(help="The site registry (Distribution on a manager, TLS from the site CA).",
                           no_args_is_help=True)


@registry_app.command("status")
def status(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """State, address, size and the repositories (with manifest digests) of the site registry."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.execute.site_registry import status as registry_status

    model = load_site(site)
    doc = registry_status(model)
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"site registry {doc['address']}: {doc['state']}, {doc['size_bytes']} bytes, "
        f"{len(doc['repositories'])} repositories")
    if doc["repositories"]:
        table(None, ["repository", "digests"],
              [[r["name"], " ".join(r["digests"])] for r in doc["repositories"]])


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
