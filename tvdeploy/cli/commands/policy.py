"""tvdeploy policy check SITE | check-bundle BUNDLE | rules | coverage | sign-waiver WAIVER"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.common import site_argument

policy_app = typer.Typer(help="Security policy checks: CIS Docker Benchmark on a swarm site, product rules, "
                         "waivers, SARIF/JUnit reports.", no_args_is_help=True)
FORMATS = ("table", "json", "sarif", "junit")
FORMAT_HELP = "table | json | sarif | junit"
OUTPUT_HELP = "Write the report to FILE (stdout otherwise)."


def _format(fmt: str) -> str:
    from tvdeploy.cli.options import OPTIONS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format: expected one of {', '.join(FORMATS)}")
    return "json" if OPTIONS.json and fmt == "table" else fmt


def _table(result: Any) -> None:
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import out, table

    shown = [f for f in result.findings if f.status != "pass" or OPTIONS.verbose]
    for target in dict.fromkeys(f.target for f in shown):
        rows = [[f.node or "", f.object, f.status, f.severity, f.rule, f.message or f.title, f.evidence
                 + (f" (waived: {f.waiver.justification}, until {f.waiver.expires})" if f.waiver else "")]
                for f in sorted(shown, key=lambda f: (f.node or "", f.object, f.rule)) if f.target == target]
        table(f"{target}", ["node", "object", "status", "severity", "rule", "finding", "evidence"], rows)
    for problem in result.waiver_problems:
        out(f"waiver not applied: {problem}")
    s = result.summary()
    out(f"{s['fail']} failed ({s['blocking']} at or above {s['fail_on']}), {s['waived']} waived, "
        f"{s['not-applicable']} not applicable, {s['pass']} passed; {s['rules']} rules")


def emit(result: Any, fmt: str, output: Path | None, site_file: str) -> None:
    """Render *result* in *fmt* to *output* or stdout; exit 1 (one error line) when it blocks."""
    import json
    import sys

    from tvdeploy import __version__, state
    from tvdeploy.errors import RefusedError

    text = None
    if fmt == "json":
        text = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
    elif fmt == "sarif":
        from tvdeploy.policy import sarif

        text = json.dumps(sarif.render(result, site_file, __version__), indent=2) + "\n"
    elif fmt == "junit":
        from tvdeploy.policy import junit

        text = junit.render(result)
    if text is None:
        _table(result)
    elif output is not None:
        state.write_atomic(output, text.encode(), mode=0o644)
    else:
        sys.stdout.write(text)
    if result.blocking and text is not None and output is None:
        # One document on stdout, the one error line on stderr, exit 1.
        print(f"error: {result.message()}", file=sys.stderr)
        raise typer.Exit(1)
    if result.blocking:
        raise RefusedError(result.message())


@policy_app.command("check")
def check(
    site_file: Path = site_argument(),
    target: list[str] = typer.Option([], "--target", "-t", help="stack, image, bundle, engine, host, swarm "
                                      "(repeatable; default: all that apply)."),
    bundle: Path | None = typer.Option(None, "--bundle", help="Check this bundle's images and signatures."),
    release: Path | None = typer.Option(None, "--release", help="Release manifest whose stack to check "
                                        "(default: the live service specs)."),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
) -> None:
    """Check the site against its policy packs; exit 1 on an unwaived finding at or above fail_on."""
    from tvdeploy.audit.recorder import utc_now
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.output import reporter
    from tvdeploy.execute.policy_observe import observe, targets_for
    from tvdeploy.policy import gate, last
    from tvdeploy.policy.model import TARGETS

    fmt = _format(fmt)
    for t in target:
        if t not in TARGETS:
            raise typer.BadParameter(f"--target {t}: expected one of {', '.join(TARGETS)}")
    site = load_site(site_file)
    targets = targets_for(target, bundle is not None)
    facts, _stats = observe(site, site_file, targets, bundle=bundle, release=release, reporter=reporter())
    result = gate.evaluate(site, site_file, facts, targets)
    last.save(site, result.to_dict(), utc_now(), str(site_file))  # for tvdeploy audit report
    emit(result, fmt, output, str(site_file))


@policy_app.command("check-bundle")
def check_bundle(
    bundle: Path = typer.Argument(..., help="The bundle tar.", show_default=False),
    trust: Path | None = typer.Option(None, "--trust", help="Trust root to verify signatures against."),
    pack: list[str] = typer.Option(["cis-docker", "trueverit"], "--pack", help="Policy packs (repeatable)."),
    fail_on: str = typer.Option("high", "--fail-on", help="critical | high | medium | low"),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
    output: Path | None = typer.Option(None, "-o", "--output", help=OUTPUT_HELP),
) -> None:
    """Check a bundle offline (before the media leaves the build machine): images and signatures."""
    from datetime import UTC, datetime

    from tvdeploy.facts.policy_bundle import gather
    from tvdeploy.policy import engine, packs
    from tvdeploy.policy.model import PolicyFacts

    fmt = _format(fmt)
    if fail_on not in ("critical", "high", "medium", "low"):
        raise typer.BadParameter("--fail-on: expected critical, high, medium or low")
    selected = packs.select(pack, Path.cwd())
    bundle_facts, images = gather(bundle, trust, datetime.now(UTC))
    result = engine.run(selected, PolicyFacts(images=images, bundle=bundle_facts), ("image", "bundle"), [], fail_on)
    emit(result, fmt, output, str(bundle))


@policy_app.command("rules")
def rules() -> None:
    """List the built-in rules: id, target, severity, CIS recommendations, title."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, table
    from tvdeploy.policy.registry import all_rules

    known = all_rules()
    if OPTIONS.json:
        emit_json([r.to_dict() for r in known.values()])
        return
    table(None, ["rule", "target", "severity", "CIS", "title"],
          [[r.id, r.target, r.severity, ", ".join(r.cis), r.title] for r in known.values()])


@policy_app.command("coverage")
def coverage() -> None:
    """All 117 CIS Docker Benchmark v1.6.0 recommendations and the rule that checks each (or why none)."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.policy.coverage import counts
    from tvdeploy.policy.coverage import coverage as table_rows

    rows = table_rows()
    if OPTIONS.json:
        emit_json(rows)
        return
    table(None, ["CIS", "title", "rule", "status", "reason"],
          [[r["cis"], r["title"], ", ".join(r["rules"]), r["status"], r["reason"]] for r in rows])
    c = counts(rows)
    out(f"{c['total']} recommendations: {c['automated']} automated, {c['manual']} manual, "
        f"{c['not-applicable']} not applicable")


@policy_app.command("sign-waiver")
def sign_waiver(
    waiver: Path = typer.Argument(..., help="Waiver YAML file (waiver: {...}).", show_default=False),
    key: str = typer.Option(..., "--key", help="Approver key name in the key store."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Signed file (default: in place)."),
) -> None:
    """Sign a waiver with an approver's Ed25519 key (its public key goes in policies.approvers)."""
    import yaml

    from tvdeploy import state
    from tvdeploy.cli.output import out
    from tvdeploy.config.yamlsafe import YamlError, load_yaml_file
    from tvdeploy.errors import ConfigError
    from tvdeploy.keys.store import key_id, load_private_key
    from tvdeploy.policy import waivers

    try:
        doc = load_yaml_file(waiver)
    except YamlError as exc:
        raise ConfigError(f"{waiver}: {exc.message}") from None
    private = load_private_key(key)
    signed = waivers.sign(doc.data, private, key_id(private.public_key()))
    target = output or waiver
    state.write_atomic(target, yaml.safe_dump(signed, sort_keys=False, default_style=None).encode(), mode=0o644)
    out(f"{target}: waiver for {signed['waiver']['rule']} signed with key {key}")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
