"""tvdeploy engine plan|install SITE --bundle B: Docker Engine onto bare nodes from a signed
bundle's packages, offline, over SSH (tvdeploy.execute.engine_install)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

engine_app = typer.Typer(help="Docker Engine on the nodes, from a signed bundle's packages (offline).",
                         no_args_is_help=True)
SITE = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)
BUNDLE = typer.Option(..., "--bundle", metavar="BUNDLE", show_default=False,
                      help="A signed bundle carrying engine packages (bundle build --engine-packages debian-12).")
TRUST = typer.Option(None, "--trust", metavar="ROOT", help="Trust root of the bundle (default: trust.root).")
NEW_HOSTS = typer.Option(False, "--trust-new-hosts", help="Record the SSH host keys of new nodes (each printed).")
UPGRADE = typer.Option(False, "--upgrade", help="Replace an engine of another version with the bundle's.")


def _planned(site: Path, bundle: Path, trust: Path | None, trust_new_hosts: bool, upgrade: bool) -> Any:
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.output import reporter
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.engine_install import make_plan, open_verified
    from tvdeploy.execute.ssh_pool import open_pool

    model = load_site(site)
    trust = trust or model.trust.root
    if trust is None:
        raise RefusedError(f"{site}: no trust root: pass --trust ROOT or set trust.root in the site file")
    rep = reporter()
    bf = open_verified(bundle, trust, rep)  # before any node is contacted
    pool = open_pool(model, trust_new_hosts=trust_new_hosts, reporter=rep)
    try:
        return model, make_plan(model, bf, pool, upgrade), pool, rep
    except BaseException:
        pool.close()
        raise


def _show(plan: Any) -> None:
    from tvdeploy.cli.output import out, table

    pk = plan.packages
    out(f"bundle: {pk.engine} {pk.engine_version} for {pk.platform} ({len(pk.packages)} packages)")
    table(None, ["node", "step", "installed", "bundle", "packages", "why"],
          [[s.node, s.kind, s.installed or "-", s.target, str(len(s.packages)), s.reason] for s in plan.steps])


def _doc(plan: Any) -> dict[str, Any]:
    return {"engine": plan.packages.engine, "version": plan.packages.engine_version,
            "platform": plan.packages.platform,
            "nodes": [{"name": s.node, "step": s.kind, "installed": s.installed, "target": s.target,
                       "packages": [p.name for p in s.packages], "reason": s.reason} for s in plan.steps]}


@engine_app.command("plan")
def plan_cmd(
    site: Path = SITE, bundle: Path = BUNDLE, trust: Path | None = TRUST, trust_new_hosts: bool = NEW_HOSTS,
    upgrade: bool = UPGRADE,
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when something would change."),
) -> None:
    """Verify BUNDLE, read each node's engine packages, show what `engine install` would do."""
    from tvdeploy.cli.common import plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json
    from tvdeploy.errors import RefusedError
    from tvdeploy.plan.engine import changes

    _model, plan, pool, _rep = _planned(site, bundle, trust, trust_new_hosts, upgrade)
    pool.close()
    emit_json(_doc(plan)) if OPTIONS.json else _show(plan)
    bad = [s for s in plan.steps if s.kind == "unsupported"]
    if bad:
        raise RefusedError(f"node {bad[0].node}: {bad[0].reason}",
                           details=[f"node {s.node}: {s.reason}" for s in bad[1:]])
    plan_exit(changes(plan.steps), detailed_exitcode)


@engine_app.command("install")
def install_cmd(
    site: Path = SITE, bundle: Path = BUNDLE, trust: Path | None = TRUST, trust_new_hosts: bool = NEW_HOSTS,
    upgrade: bool = UPGRADE,
) -> None:
    """Verify BUNDLE, then on every node that needs it, in parallel: copy only the packages it
    lacks, install them with dpkg (no network), start the engine, check its version. Nodes at
    the bundle's version are left alone; another version only changes with --upgrade."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json, out
    from tvdeploy.execute.engine_install import install

    signing_key()  # no audit key, no install
    model, plan, pool, rep = _planned(site, bundle, trust, trust_new_hosts, upgrade)
    with pool:
        if not OPTIONS.json:
            _show(plan)
        todo = [s for s in plan.steps if s.kind != "no-op"]
        if todo:
            confirm(f"install Docker Engine {plan.packages.engine_version} on {len(todo)} node(s) of "
                    f"site {model.site.name}?")
        results = install(model, plan, pool, rep)
    if OPTIONS.json:
        emit_json({**_doc(plan), "results": [{"name": r.node, "step": r.kind, "version": r.version,
                                              "copied_bytes": r.copied} for r in results]})
        return
    changed = [r for r in results if r.kind != "no-op"]
    out(f"site {model.site.name}: Docker Engine {plan.packages.engine_version} on {len(results)} node(s); "
        + (f"{len(changed)} changed ({', '.join(f'{r.node}: {r.kind}' for r in changed)})" if changed
           else "nothing to change"))


def register(app: typer.Typer) -> None:
    app.add_typer(engine_app, name="engine")
