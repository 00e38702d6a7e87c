"""tvdeploy site validate|show SITE"""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

site_app = typer.Typer(help="Check and show a site file.", no_args_is_help=True)


@site_app.command("validate")
def validate(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """Validate SITE: schema, types, unknown keys, names, addresses, quorum, referenced files."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.config.load import load_site

    model = load_site(site)
    if OPTIONS.json:
        emit_json({"valid": True, "site": model.site.name, "file": str(site.resolve())})
    else:
        out(f"{site}: valid (site {model.site.name}, {len(model.nodes)} nodes, "
            f"{len(model.managers)} managers)")


@site_app.command("show")
def show(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """Print the normalized site model (defaults filled, paths absolute, secrets never resolved)."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.config.load import load_site, site_document

    model = load_site(site)
    doc = site_document(model)
    if OPTIONS.json:
        emit_json(doc)
        return
    import yaml

    out(yaml.safe_dump(doc, sort_keys=False).rstrip())
    table(
        "nodes",
        ["name", "role", "address", "zone", "cpus", "memory_mb", "disk_gb"],
        [[n.name, n.role, n.address, n.zone, n.cpus, n.memory_mb, n.disk_gb] for n in model.nodes],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(site_app, name="site")
