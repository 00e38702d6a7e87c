"""tvdeploy registry status SITE"""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

registry_app = typer.Typer(help="The site registry (a replica on every manager, mutual TLS from the site CA).",
                           no_args_is_help=True)


@registry_app.command("status")
def status(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """State, address, size and the repositories (with manifest digests) of the site registry, and
    the state of each manager's replica."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.execute.registry_status import status as registry_status

    model = load_site(site)
    doc = registry_status(model)
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"site registry {doc['address']}: {doc['state']}, {doc['size_bytes']} bytes, "
        f"{len(doc['repositories'])} repositories")
    for rep in doc["replicas"]:
        extra = f", {rep['missing']} image(s) missing" if rep.get("missing") else ""
        out(f"  replica {rep['node']} {rep['address']}: {rep['state']}{extra}"
            + (f" ({rep['error']})" if rep.get("error") else ""))
    if doc["repositories"]:
        table(None, ["repository", "digests"],
              [[r["name"], " ".join(r["digests"])] for r in doc["repositories"]])


@registry_app.command("sync")
def sync(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """Copy into each replica the images the other replicas hold and it lacks (a manager that was
    down during an import); every import does this first too."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, reporter
    from tvdeploy.execute.site_registry import sync as registry_sync

    model = load_site(site)
    copied = registry_sync(model, reporter())
    if OPTIONS.json:
        emit_json({"copied": copied})
        return
    out("; ".join(f"replica {node}: {n} image(s) copied" for node, n in copied.items())
        or f"site {model.site.name}: every replica that answers holds the same images")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
