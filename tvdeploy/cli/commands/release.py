"""tvdeploy release render|list|plan|deploy|history|status SITE ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

release_app = typer.Typer(help="Run the Trueverit stack of an imported release, by digest, health-gated.",
                          no_args_is_help=True)
SITE = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)
RELEASE = typer.Argument(..., help="A release id imported on the site (tvdeploy release list SITE).",
                         show_default=False)


def _short(digest: str | None) -> str:
    return "-" if not digest else digest.removeprefix("sha256:")[:12]


@release_app.command("render")
def render_cmd(site: Path = SITE, release: str = RELEASE) -> None:
    """Print the rendered stack (compose file) of RELEASE; secret values never appear in it."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json
    from tvdeploy.execute.release_deploy import Target, prepare

    p = prepare(load_site(site), Target("deploy", release), check_registry=False)
    p.api.close()
    if OPTIONS.json:
        emit_json(p.rendered.compose)
    else:
        print(p.rendered.text, end="")


@release_app.command("list")
def list_cmd(site: Path = SITE) -> None:
    """The releases imported on the site and which one is deployed."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.release.views import list_releases

    rows = list_releases(load_site(site))
    if OPTIONS.json:
        emit_json(rows)
        return
    if not rows:
        out("no release imported on this site (tvdeploy bundle import SITE BUNDLE)")
        return
    table(None, ["release", "sequence", "deployed", "imported", "signers"],
          [[r["release"], r["sequence"], "yes" if r["deployed"] else "", r["imported"], len(r["signers"])]
           for r in rows])


def _render_plan(plan: Any, not_ready: list[str]) -> None:
    from tvdeploy.cli.output import out, table, warn

    rows = [[s.service, s.tier, s.action, f"{_short(s.old_digest)} -> {_short(s.new_digest)}",
             ", ".join(s.changes)] for s in plan.steps if s.action != "noop"]
    if rows:
        table(None, ["service", "tier", "action", "digest", "changes"], rows)
    for name in plan.create_secrets + plan.create_configs:
        out(f"create swarm object {name}")
    noop = sum(1 for s in plan.steps if s.action == "noop")
    out(f"release {plan.release} (sequence {plan.sequence}): {len(rows)} to change, {noop} unchanged")
    for name in not_ready:
        warn(f"node {name} is not ready/active")
    for p in plan.problems:
        warn(p)


def _plan_and_exit(model: Any, target: Any, detailed_exitcode: bool) -> None:
    from tvdeploy.cli.common import plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.release_deploy import plan

    p = plan(model, target)
    if OPTIONS.json:
        emit_json({**p.plan.to_json(), "kind": target.kind, "not_ready": p.not_ready})
    else:
        _render_plan(p.plan, p.not_ready)
    if p.plan.problems:
        raise RefusedError(p.plan.problems[0], details=p.plan.problems[1:])
    plan_exit(p.plan.changes, detailed_exitcode)


DETAILED = typer.Option(False, "--detailed-exitcode", help="Exit 2 when something would change, 0 when nothing would.")


@release_app.command("plan")
def plan_cmd(site: Path = SITE, release: str = RELEASE, detailed_exitcode: bool = DETAILED) -> None:
    """What deploy would change, per service; checks digests, quorum and secrets first. Changes nothing."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.execute.release_deploy import Target

    _plan_and_exit(load_site(site), Target("deploy", release), detailed_exitcode)


def _run(site: Path, target: Any, question: str) -> None:
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json_line, out, reporter
    from tvdeploy.execute.release_deploy import run

    model = load_site(site)
    confirm(f"{question} on site {model.site.name}?")
    result = run(model, site, target, reporter(events=True))
    if OPTIONS.json:
        emit_json_line({"event": "result", **result.to_json()})
    elif not result.changed and not result.removed:
        out(f"release {result.release}: nothing to do, every service converged")
    else:
        out(f"{target.kind} of release {result.release} done in {result.seconds:.1f} s: "
            f"{', '.join(result.changed) if len(result.changed) < 4 else f'{len(result.changed)} services'} changed"
            + (f", removed {', '.join(result.removed)}" if result.removed else ""))


@release_app.command("deploy")
def deploy_cmd(site: Path = SITE, release: str = RELEASE) -> None:
    """Deploy RELEASE tier by tier (data, apps, fronts), each converged and healthy before the next;
    on a failed gate every changed service goes back to its previous spec."""
    from tvdeploy.execute.release_deploy import Target

    _run(site, Target("deploy", release), f"deploy release {release}")


@release_app.command("hotfix")
def hotfix_cmd(
    site: Path = SITE,
    service: str = typer.Argument(..., help="The service to change (its name in the release manifest).",
                                  show_default=False),
    release: str = typer.Option(..., "--release", help="The imported release that carries the fixed image."),
) -> None:
    """Change only SERVICE to its digest in RELEASE, health-gated, rolled back by itself on failure."""
    from tvdeploy.execute.release_deploy import Target

    _run(site, Target("hotfix", release, service), f"hot-fix {service} from release {release}")


@release_app.command("rollback")
def rollback_cmd(
    site: Path = SITE,
    to: str = typer.Option(None, "--to", help="The release to return to (default: the previous one in the history)."),
    plan_only: bool = typer.Option(False, "--plan", help="Show the rollback's plan; change nothing."),
    detailed_exitcode: bool = DETAILED,
) -> None:
    """Return the whole stack to the previous release (or --to RELEASE), checking first that every
    image it needs is still in the site registry."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.execute.release_deploy import Target

    target = Target("rollback", to)
    if plan_only or detailed_exitcode:
        _plan_and_exit(load_site(site), target, detailed_exitcode)
        return
    _run(site, target, "roll back" + (f" to release {to}" if to else " to the previous release"))


@release_app.command("history")
def history_cmd(site: Path = SITE) -> None:
    """Every deploy, hot-fix and rollback (failed ones too), newest first, from the swarm."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.release.views import history

    rows = history(load_site(site))
    if OPTIONS.json:
        emit_json(rows)
        return
    if not rows:
        out("no deploy recorded on this site")
        return
    table(None, ["time", "release", "kind", "outcome", "operator", "changed"],
          [[r["time"][:19], r["release"], r["kind"], r["outcome"], r["operator"][:12], len(r["changed"])]
           for r in rows])


@release_app.command("status")
def status_cmd(site: Path = SITE) -> None:
    """Every service: release digest, digests its tasks run, replicas, health, drift."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.release.views import status

    doc = status(load_site(site))
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"release: {doc['release'] or 'none deployed'}")
    table(None, ["service", "digest", "running", "replicas", "health", "drift"],
          [[s["name"], _short(s["digest"]), " ".join(_short(d) for d in s["running_digests"]),
            f"{s['replicas']['running']}/{s['replicas']['desired']}", s["health"], "DRIFT" if s["drift"] else ""]
           for s in doc["services"]])


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")
