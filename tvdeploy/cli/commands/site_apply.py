"""tvdeploy plan SITE / tvdeploy apply SITE: every layer of the site in one plan and one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

SITE = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)
BUNDLE = typer.Option(None, "--bundle", metavar="BUNDLE", help="A signed bundle (file or chunk folder) to import.")
TRUST = typer.Option(None, "--trust", metavar="ROOT", help="Trust root of the bundle (default: trust.root).")
RELEASE = typer.Option(None, "--release", help="The release to run (default: the bundle's release).")


def plan_cmd(
    site: Path = SITE, bundle: Path | None = BUNDLE, trust: Path | None = TRUST, release: str | None = RELEASE,
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when something would change."),
) -> None:
    """One plan across every layer: VMs, TLS and swarm, images, policy, services. Changes nothing."""
    from tvdeploy.cli.common import load_site, plan_exit
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, reporter, table, warn
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.site_plan import plan_site

    model = load_site(site)
    p = plan_site(model, site, bundle, trust or model.trust.root, release, reporter())
    if OPTIONS.json:
        emit_json(p.to_json())
    else:
        rows = [[x.layer, "skip" if x.skipped else ("change" if x.changes else "ok"), x.summary] for x in p.layers]
        table(None, ["layer", "plan", "summary"], rows)
        for x in p.layers:
            for step in x.steps[:20]:
                out(f"  {x.layer}: {step}")
            if len(x.steps) > 20:
                out(f"  {x.layer}: ... and {len(x.steps) - 20} more")
        for problem in p.problems:
            warn(problem)
    if p.problems:
        raise RefusedError(p.problems[0], details=p.problems[1:])
    plan_exit(p.changes, detailed_exitcode)


def apply_cmd(
    site: Path = SITE, bundle: Path | None = BUNDLE, trust: Path | None = TRUST, release: str | None = RELEASE,
    trust_new_hosts: bool = typer.Option(False, "--trust-new-hosts",
                                         help="Record the SSH host keys of new nodes (each printed)."),
) -> None:
    """Every layer in order, each skipped when converged: VMs, TLS + swarm, bundle import, the
    release (policy-gated, health-gated); a rerun after a crash goes on where it stopped."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json_line, reporter
    from tvdeploy.execute.site_apply import apply_site

    model = load_site(site)
    what = ", ".join(x for x in ("VMs", "swarm", "import" if bundle else "", "release" if bundle or release else "")
                     if x)
    confirm(f"apply site {model.site.name} ({what})?")
    result = apply_site(model, site, bundle=bundle, trust=trust or model.trust.root, release=release,
                        trust_new_hosts=trust_new_hosts, reporter=reporter(events=True))
    if OPTIONS.json:
        emit_json_line({"event": "result", **result.to_json()})
        return
    _summary(result)


def _summary(result: Any) -> None:
    from tvdeploy.cli.output import out, table

    table(f"site {result.site}: applied in {result.seconds:.1f} s", ["layer", "changed", "took", "summary"],
          [[x.layer, "yes" if x.changed else "no", f"{x.seconds:.1f} s", x.summary] for x in result.layers])
    out(f"release running: {result.release or '-'}; policy: {result.policy.get('blocking', '?')} blocking "
        f"finding(s) at or above {result.policy.get('fail_on', '?')}")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
    app.command("apply")(apply_cmd)
