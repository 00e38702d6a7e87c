"""tvdeploy swarm plan|bootstrap|status|unlock|unlock-key SITE"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP
from tvdeploy.cli.output import reporter

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.execute.swarm_session import SwarmView

swarm_app = typer.Typer(
    help="Form and keep the Docker Swarm: pre-flight, quorum, zones, autolock.", no_args_is_help=True
)

SITE = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)


def _pool(model: Site, trust_new_hosts: bool, rep: Any) -> SSHPool:
    from tvdeploy.execute.ssh_pool import open_pool

    return open_pool(model, trust_new_hosts=trust_new_hosts, reporter=rep)


def _view_json(model: Site, view: SwarmView) -> dict[str, Any]:
    tls = view.tls_plan
    return {
        "site": model.site.name,
        "changes": bool(view.plan.steps) or bool(tls is not None and tls.changes),
        "findings": [f.as_dict() for f in view.findings],
        "tls": tls.to_json() if tls is not None else None,
        "steps": [s.as_dict() for s in view.plan.steps],
        "problems": list(view.plan.problems),
    }


def _grouped(findings: list[Any]) -> list[tuple[tuple[str, str, str], list[str]]]:
    """One line per distinct finding with the nodes it applies to (a kernel that lacks ESP
    is usually the same on every node: one line, not one per node)."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for f in findings:
        groups.setdefault((f.severity, f.check, f.message), []).append("(all)" if f.node == "*" else f.node)
    return list(groups.items())


def _show(model: Site, view: SwarmView) -> None:
    from tvdeploy.cli.output import out

    errors = sum(1 for f in view.findings if f.severity == "error")
    warnings = sum(1 for f in view.findings if f.severity == "warning")
    out(f"site {model.site.name}: pre-flight {errors} error(s), {warnings} warning(s)")
    for (severity, check, message), nodes in _grouped(view.findings):
        out(f"  {severity:<8} {check:<16} {', '.join(nodes)}: {message}")
    tls = view.tls_plan
    if tls is None:
        out("tls: not planned (a node is unreachable)")
    elif tls.changes:
        touched = sum(1 for n in tls.nodes if n.steps)
        out(f"tls: {len(tls.steps)} change(s) on {touched} node(s); applied first (see tvdeploy tls plan)")
    else:
        out("tls: nothing to do")
    out(f"swarm: {len(view.plan.steps)} step(s)" if view.plan.steps else "swarm: nothing to do")
    for step in view.plan.steps:
        out(f"  {step.describe()}")
    for problem in view.plan.problems:
        out(f"  problem: {problem}")


@swarm_app.command("plan")
def plan(
    site: Path = SITE,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when something would change, 0 when not."
    ),
) -> None:
    """Pre-flight findings (SSH, ports, clock, kernel ESP/IPVS), pending TLS changes and the swarm
    steps in the order they would run. Changes nothing."""
    from tvdeploy.cli.common import load_site, plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json
    from tvdeploy.execute.swarm_session import Clients, survey

    model = load_site(site)
    rep = reporter()
    with _pool(model, False, rep) as pool, Clients() as clients:
        view = survey(model, pool, clients, rep)
    doc = _view_json(model, view)
    if OPTIONS.json:
        emit_json(doc)
    else:
        _show(model, view)
    plan_exit(doc["changes"], detailed_exitcode)


def _report_findings(view: SwarmView, rep: Any) -> None:
    for (severity, _check, message), nodes in _grouped(view.findings):
        line = message if nodes == ["(all)"] else f"{', '.join(nodes)}: {message}"
        if severity == "warning":
            rep.warn(line)
        elif severity == "info":
            rep.info(line)


@swarm_app.command("bootstrap")
def bootstrap(
    site: Path = SITE,
    trust_new_hosts: bool = typer.Option(
        False,
        "--trust-new-hosts",
        help="Record the host key of nodes not yet in ssh.known_hosts "
        "(each fingerprint is printed: compare it out of band).",
    ),
) -> None:
    """Pre-flight, then `tls apply` when needed, then form or converge the swarm (init, joins,
    labels, networks, removals; quorum kept at every step), then print the status."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, out
    from tvdeploy.execute.swarm_bootstrap import bootstrap as run_bootstrap
    from tvdeploy.execute.swarm_bootstrap import needs_review
    from tvdeploy.execute.swarm_session import Clients

    model = load_site(site)
    signing_key()  # no audit key, no change: fail before touching anything
    rep = reporter()

    def review(view: SwarmView) -> None:
        if not needs_review(view):
            _report_findings(view, rep)
        elif not OPTIONS.json:
            _show(model, view)

    with _pool(model, trust_new_hosts, rep) as pool, Clients() as clients:
        done = run_bootstrap(model, pool, clients, rep, review=review, confirm=confirm)
        if not done.changed:
            out(f"site {model.site.name}: nothing to do; the swarm matches the site file")
            _print_status(model, clients, done.facts)  # nothing changed: the survey's facts hold
            return
        t = done.seconds
        out(f"site {model.site.name}: {done.tls_changes} TLS change(s), {done.swarm_steps} swarm step(s) applied in "
            f"{t['total']:.1f} s (pre-flight {t['preflight']:.1f} s, tls {t['tls']:.1f} s, swarm {t['swarm']:.1f} s)")
        _print_status(model, clients)


def _print_status(model: Site, clients: Any, facts: Any = None) -> None:
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.execute.swarm_status import swarm_status

    doc = swarm_status(model, clients, facts)
    if OPTIONS.json:
        emit_json(doc)
        return
    lock = "on" if doc["autolock"] else "off"
    out(f"swarm {doc['cluster_id'] or '(none)'}: {doc['managers']} manager(s), autolock {lock}")
    table(
        None,
        ["name", "address", "role", "state", "availability", "engine", "cert expires"],
        [
            [n["name"], n["address"], n["role"], n["state"], n["availability"], n["engine"], n["cert_expires"]]
            for n in doc["nodes"]
        ],
    )
    for f in doc["findings"]:
        node = "(all)" if f["node"] == "*" else f["node"]
        out(f"{f['severity']}: {node}: {f['message']}")


@swarm_app.command("status")
def status(site: Path = SITE) -> None:
    """Every node as the swarm sees it (role, state, availability, engine, TLS certificate
    expiry), autolock, manager count and findings. Over the Docker API only."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.execute.swarm_session import Clients
    from tvdeploy.execute.swarm_status import require_clients

    model = load_site(site)
    with Clients() as clients:
        require_clients(model, clients)
        _print_status(model, clients)


@swarm_app.command("unlock")
def unlock(site: Path = SITE) -> None:
    """Unlock every manager that came back locked (autolock), with the escrowed key."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.swarm_session import Clients
    from tvdeploy.execute.swarm_status import require_clients, unlock_locked

    model = load_site(site)
    signing_key()
    with Clients() as clients:
        require_clients(model, clients)
        locked = unlock_locked(model, clients, reporter())
    if OPTIONS.json:
        emit_json({"site": model.site.name, "unlocked": locked})
    elif locked:
        out(f"site {model.site.name}: unlocked {', '.join(locked)}")
    else:
        out(f"site {model.site.name}: no manager is locked")


@swarm_app.command("unlock-key")
def unlock_key(
    site: Path = SITE,
    show: bool = typer.Option(False, "--show", help="Print the unlock key itself (recorded in the audit log)."),
) -> None:
    """Where the swarm unlock key is escrowed and to whom; the key itself only with --show."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.unlock_escrow import describe_escrow, load_unlock_key

    model = load_site(site)
    where = describe_escrow(model)
    if not show:
        if OPTIONS.json:
            emit_json(where)
        else:
            out(f"unlock key of site {model.site.name} is escrowed in {where['path']}")
            out(f"sealed to {len(where['recipients'])} key(s): {', '.join(where['recipients'])}")
            out("print it with --show (the showing is recorded in the audit log)")
        return
    from tvdeploy.audit.recorder import record

    key = load_unlock_key(model)
    record(model, "swarm.unlock-key.show", objects=[{"type": "escrow", "name": where["path"]}])
    if OPTIONS.json:
        emit_json({**where, "unlock_key": key.reveal()})
    else:
        out(key.reveal())


def register(app: typer.Typer) -> None:
    app.add_typer(swarm_app, name="swarm")
