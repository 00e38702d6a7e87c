"""tvdeploy tls plan|apply|status|rotate SITE"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP
from tvdeploy.cli.output import reporter

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.plan.tls import TlsPlan

tls_app = typer.Typer(help="Site PKI and the nodes' Docker API over mutual TLS.", no_args_is_help=True)

SITE = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)


def _pool(model: Site, trust_new_hosts: bool, reporter: Any) -> SSHPool:
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.execute.ssh_pool import open_pool

    def stream(node: str, line: str) -> None:
        reporter.info(f"[{node}] {line}")

    return open_pool(model, trust_new_hosts=trust_new_hosts, reporter=reporter,
                     stream=stream if OPTIONS.verbose else None)


def _plan(model: Site, pool: SSHPool, reporter: Any, rotate: bool = False) -> TlsPlan:
    from tvdeploy.execute.tls import observe
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.pki.certinfo import utcnow
    from tvdeploy.pki.local import read_local_pki
    from tvdeploy.plan.tls import plan_tls

    facts = observe(model, pool, reporter)
    return plan_tls(model, facts, read_local_pki(pki_paths(model)), utcnow(), rotate=rotate)


def _show(plan: TlsPlan) -> None:
    from tvdeploy.cli.output import out

    out(f"site {plan.site}: {len(plan.steps)} change(s) on {sum(1 for n in plan.nodes if n.steps)} "
        f"of {len(plan.nodes)} node(s)")
    for s in plan.global_steps:
        out(f"  {'(operator)':<14} {s.action:<22} {s.reason}")
    for n in plan.nodes:
        if not n.steps:
            out(f"  {n.node:<14} {'nothing to do':<22}")
        for s in n.steps:
            out(f"  {n.node:<14} {s.action:<22} {s.reason}")


@tls_app.command("plan")
def plan(
    site: Path = SITE,
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 2 when something would change, 0 when not."),
) -> None:
    """Show what `tls apply` would change on each node (reads the nodes over SSH, changes nothing)."""
    from tvdeploy.cli.common import load_site, plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json

    model = load_site(site)
    rep = reporter()
    with _pool(model, False, rep) as pool:
        result = _plan(model, pool, rep)
    for w in result.warnings:
        rep.warn(w)
    if OPTIONS.json:
        emit_json(result.to_json())
    else:
        _show(result)
    plan_exit(result.changes, detailed_exitcode)


def _apply(site: Path, trust_new_hosts: bool, rotate: bool) -> None:
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json, out
    from tvdeploy.execute.tls import apply_tls
    from tvdeploy.pki.certinfo import utcnow

    model = load_site(site)
    signing_key()  # no audit key, no change: fail before touching anything
    rep = reporter()
    with _pool(model, trust_new_hosts, rep) as pool:
        result = _plan(model, pool, rep, rotate=rotate)
        if not result.changes:
            if OPTIONS.json:
                emit_json({**result.to_json(), "applied": []})
            else:
                out(f"site {result.site}: nothing to do; every node is configured")
            return
        if not OPTIONS.json:
            _show(result)
        verb = "rotate every certificate of" if rotate else f"apply {len(result.steps)} change(s) to"
        confirm(f"{verb} site {result.site}?")
        outcomes = apply_tls(model, result, pool, rep, utcnow())
    if OPTIONS.json:
        emit_json({**result.to_json(), "applied": [
            {"node": o.node, "actions": o.actions, "restarted": o.restarted,
             "certificate_sha256": o.certificate_sha256} for o in outcomes]})
    else:
        restarted = [o.node for o in outcomes if o.restarted]
        out(f"site {result.site}: applied; dockerd restarted on {len(restarted)} node(s)"
            + (f" ({', '.join(restarted)})" if restarted else ""))


@tls_app.command("apply")
def apply(
    site: Path = SITE,
    trust_new_hosts: bool = typer.Option(False, "--trust-new-hosts",
                                         help="Record the host key of nodes not yet in ssh.known_hosts "
                                         "(each fingerprint is printed: compare it out of band)."),
) -> None:
    """Create the site CA, issue certificates (node keys made on the nodes), configure dockerd
    for mutual TLS on port 2376, restart it only where something changed."""
    _apply(site, trust_new_hosts, rotate=False)


@tls_app.command("rotate")
def rotate(site: Path = SITE) -> None:
    """New server key and certificate on every node (one node's API down at a time) and a new
    operator client certificate."""
    _apply(site, False, rotate=True)


@tls_app.command("status")
def status(site: Path = SITE) -> None:
    """List every certificate of the site (CA, operator client, each node's server) with expiry."""
    import sys

    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, table
    from tvdeploy.facts.hosts import gather_all
    from tvdeploy.pki.status import site_status

    model = load_site(site)
    rep = reporter()
    with _pool(model, False, rep) as pool:
        doc = site_status(model, gather_all(model, pool), rep)
    if OPTIONS.json:
        emit_json(doc)
    else:
        rows = [[c["name"], c["kind"], c.get("subject", ""),
                 c.get("not_after", "")[:16].replace("T", " "),
                 "" if "days_left" not in c else f"{c['days_left']:.0f}", c.get("state", "")]
                for c in doc["certificates"]]
        table(f"site {model.site.name}: certificates", ["name", "kind", "subject", "expires", "days left",
                                                         "state"], rows)
    errors = [c for c in doc["certificates"] if c.get("state", "").startswith("error")]
    if errors:
        print(f"error: {errors[0]['state'].removeprefix('error: ')}", file=sys.stderr)
        if len(errors) > 1:
            print(f"({len(errors) - 1} more errors; -v shows all)", file=sys.stderr)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
