"""tvdeploy vm plan|apply|destroy|list SITE"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

vm_app = typer.Typer(help="Provision the site's VMs on vSphere (pinned TLS, owned VMs only).", no_args_is_help=True)


def _render_plan(plan: Any) -> None:
    from tvdeploy.cli.output import out, table

    rows = []
    for s in plan.steps:
        detail = ", ".join(f"{c.field} {_short(c.old)} -> {_short(c.new)}" for c in s.changes)
        if s.kind == "update":
            detail += " (power cycle)" if s.power_cycle else " (no power cycle)"
        rows.append([s.name, s.kind, detail or s.reason])
    table(None, ["vm", "action", "detail"], rows)
    counts: dict[str, int] = {}
    for s in plan.steps:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no VMs declared"
    out(f"plan: {summary}")


def _short(value: Any) -> str:
    return "-" if value is None else str(value)


@vm_app.command("plan")
def plan_cmd(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 2 when something would change, 0 when nothing would."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Plan deleting this site's VMs the site file no longer declares."
    ),
) -> None:
    """Show what apply would do: create / update / power-on / no-op / conflict / orphan. Changes nothing."""
    from tvdeploy.cli.common import load_site, plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, warn
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.facts.vms import gather, read_site_id
    from tvdeploy.plan.vms import plan_vms

    model = load_site(site)
    with connect(model) as session:
        placement = session.placement()
        facts = gather(session, placement)
    plan = plan_vms(model, facts, read_site_id(model), prune=prune)
    if OPTIONS.json:
        emit_json(plan.to_dict())
    else:
        _render_plan(plan)
    for c in plan.conflicts:
        warn(f"vm {c.name}: conflict: {c.reason}")
    plan_exit(plan.changes, detailed_exitcode)


@vm_app.command("apply")
def apply_cmd(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    parallel: int = typer.Option(4, "--parallel", min=1, max=64, help="VMs worked on at the same time."),
    prune: bool = typer.Option(False, "--prune", help="Also delete this site's VMs the site file no longer declares."),
    timeout: float = typer.Option(
        900.0, "--timeout", min=1.0, help="Seconds each stage (clone, customization, guest IP, ...) may take."
    ),
) -> None:
    """Create and converge the declared VMs (clone, hardware, customization, power on, guest IP)."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json_line, info, reporter
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.vms import Timeouts, apply_plan
    from tvdeploy.facts.vms import ensure_site_id, gather, read_site_id
    from tvdeploy.plan.vms import plan_vms

    model = load_site(site)
    with connect(model) as session:
        placement = session.placement()
        facts = gather(session, placement)
        plan = plan_vms(model, facts, read_site_id(model), prune=prune)
        if OPTIONS.json:
            emit_json_line({"event": "plan", **plan.to_dict()})
        elif not OPTIONS.quiet:
            _render_plan(plan)
        if plan.conflicts:
            first = plan.conflicts[0]
            raise RefusedError(
                f"vm {first.name}: conflict: {first.reason}; nothing was changed",
                details=[f"vm {s.name}: conflict: {s.reason}" for s in plan.conflicts[1:]],
            )
        if not plan.changes:
            info("nothing to do: every VM matches the site file")
            return
        n = sum(1 for s in plan.steps if s.kind not in ("no-op", "orphan"))
        confirm(f"apply {n} VM changes on vCenter {model.vcenter.host}?")
        site_id = ensure_site_id(model)
        # The first apply generates the marker: nothing found before was ours, so plan again
        # with it (a no-op on later applies, where read_site_id already returned it).
        plan = plan_vms(model, facts, site_id, prune=prune)
        changed = apply_plan(
            model, plan, session, placement, site_id, reporter(events=True), record,
            parallel=parallel, timeouts=Timeouts.scaled(timeout),
        )
    if OPTIONS.json:
        emit_json_line({"event": "apply.done", "changed": changed})
    else:
        info(f"applied: {len(changed)} VMs changed")


@vm_app.command("destroy")
def destroy_cmd(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """Power off and delete this site's VMs (only those carrying its marker)."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json_line, info, reporter
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.execute.vms import apply_plan
    from tvdeploy.facts.vms import gather, read_site_id
    from tvdeploy.plan.vms import plan_destroy

    model = load_site(site)
    site_id = read_site_id(model)
    with connect(model) as session:
        placement = session.placement()
        plan = plan_destroy(gather(session, placement), site_id)
        if not plan.steps or site_id is None:
            info("nothing to destroy: no VM carries this site's marker")
            if OPTIONS.json:
                emit_json_line({"event": "destroy.done", "deleted": []})
            return
        if not OPTIONS.json and not OPTIONS.quiet:
            _render_plan(plan)
        names = ", ".join(s.name for s in plan.steps)
        confirm(f"power off and delete {len(plan.steps)} VMs ({names}) on vCenter {model.vcenter.host}?")
        deleted = apply_plan(model, plan, session, placement, site_id, reporter(events=True), record)
    if OPTIONS.json:
        emit_json_line({"event": "destroy.done", "deleted": deleted})
    else:
        info(f"destroyed: {len(deleted)} VMs")


@vm_app.command("list")
def list_cmd(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """The VMs in the site folder and the declared nodes that have none."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, table
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.facts.vms import gather, read_site_id
    from tvdeploy.plan.vms import list_rows

    model = load_site(site)
    with connect(model) as session:
        facts = gather(session, session.placement())
    rows = list_rows(model, facts, read_site_id(model))
    if OPTIONS.json:
        emit_json(rows)
        return
    table(
        None,
        ["name", "ip", "power", "cpus", "memory_mb", "owned"],
        [[r["name"], r["ip"], r["power"], r["cpus"], r["memory_mb"], "yes" if r["owned"] else "no"] for r in rows],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(vm_app, name="vm")
