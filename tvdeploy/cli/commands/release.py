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
    from tvdeploy.execute.release_deploy import prepare

    p = prepare(load_site(site), release, check_registry=False)
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


@release_app.command("plan")
def plan_cmd(
    site: Path = SITE, release: str = RELEASE,
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when something would change."),
) -> None:
    """What deploy would change, per service; checks digests, quorum and secrets first. Changes nothing."""
    from tvdeploy.cli.common import load_site, plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.release_deploy import plan

    p, not_ready = plan(load_site(site), release)
    if OPTIONS.json:
        emit_json({**p.to_json(), "not_ready": not_ready})
    else:
        _render_plan(p, not_ready)
    if p.problems:
        raise RefusedError(p.problems[0], details=p.problems[1:])
    plan_exit(p.changes, detailed_exitcode)


@release_app.command("deploy")
def deploy_cmd(site: Path = SITE, release: str = RELEASE) -> None:
    """Deploy RELEASE tier by tier (data, apps, fronts), each converged and healthy before the next;
    on a failed gate every changed service goes back to its previous spec."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json_line, out, reporter
    from tvdeploy.execute.release_deploy import deploy

    model = load_site(site)
    confirm(f"deploy release {release} to site {model.site.name}?")
    result = deploy(model, site, release, reporter(events=True))
    if OPTIONS.json:
        emit_json_line({"event": "result", **result.to_json()})
        return
    if not result.changed and not result.removed:
        out(f"release {result.release}: nothing to do, every service converged")
        return
    out(f"release {result.release} deployed in {result.seconds:.1f} s: {len(result.changed)} services changed"
        + (f", removed {', '.join(result.removed)}" if result.removed else ""))


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
