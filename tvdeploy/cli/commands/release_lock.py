"""tvdeploy release lock|unlock SITE: the deploy lock (a lease in the swarm)."""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.commands.release import SITE, release_app


@release_app.command("lock")
def lock_cmd(site: Path = SITE) -> None:
    """Who holds the deploy lock, since when and until when."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.deploy_lock import status

    doc = status(load_site(site))
    if OPTIONS.json:
        emit_json(doc)
    elif not doc["held"]:
        out("deploy lock: free" + (" (an expired lease is left; the next command takes it over)"
                                   if doc.get("expired") else ""))
    else:
        o = doc["owner"]
        out(f"deploy lock: held by key {o['key_id'][:16]} on {o['host']} (pid {o['pid']}), `{doc['command']}`, "
            f"since {doc['started']}, until {doc['expires']}")


@release_app.command("unlock")
def unlock_cmd(site: Path = SITE,
               force: bool = typer.Option(False, "--force", help="Required: breaking a lock is deliberate.")) -> None:
    """Break the deploy lock (an audit record names whose lease was broken)."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.output import confirm, out
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.deploy_lock import break_lock

    if not force:
        raise RefusedError("release unlock breaks another operator's lock: pass --force")
    model = load_site(site)
    confirm(f"break the deploy lock of site {model.site.name}?")
    held = break_lock(model)
    out("deploy lock: was free" if held is None else f"deploy lock broken: it was held by {held}")


def register(app: typer.Typer) -> None:
    """Nothing to add: the commands above belong to the release group."""
