"""tvdeploy audit report SITE -o DIR [--pdf] [--since DATE] | audit report-verify DIR --key PUB"""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.commands.audit import audit_app
from tvdeploy.cli.common import SITE_ARG_HELP


def _since(text: str | None) -> str | None:
    """DATE (2026-12-01) or a UTC time (2026-12-01T10:00:00Z) -> the record time format."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"--since {text}: expected a date (2026-12-01) or a UTC time "
                                 "(2026-12-01T10:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@audit_app.command("report")
def report(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Folder to write report.html, report.json "
                                "(report.pdf) and their .sig files into.", show_default=False),
    pdf: bool = typer.Option(False, "--pdf", help="Also write report.pdf (needs the 'report' extra)."),
    since: str | None = typer.Option(None, "--since", help="Changes from this date or UTC time on "
                                     "(default: the whole log)."),
    trust: Path | None = typer.Option(None, "--trust", help="Trust root to show (default: the site "
                                      "file's trust.root)."),
) -> None:
    """Write a signed audit report of SITE for security teams: what runs where, by which digest,
    signed by whom, checked how, changed when; from live facts and the verified audit log."""
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn
    from tvdeploy.execute.audit_report import write_report

    bound = _since(since)
    model = load_site(site)
    root = trust or (Path(model.trust.root) if model.trust.root else None)
    result = write_report(model, site, output, pdf=pdf, since=bound, trust_path=root)
    s = result.document["summary"]
    for line in result.warnings:
        warn(line)
    if OPTIONS.json:
        emit_json({"site": model.site.name, "directory": str(output), "files": result.files, "summary": s,
                   "timings": result.timings})
        return
    for name in result.files:
        out(f"{output / name} (signed: {name}.sig)")
    for section in s["sections_not_read"]:
        warn(f"section {section}: not read (see the report)")
    if s["drifted"]:
        warn(f"drift on {', '.join(s['drifted'])}")
    if s["log_valid"] is False or s["site_copies_valid"] is False:
        warn("the audit log or the site's copies did not verify (see the integrity section)")
    out(f"report of site {model.site.name}: {s['services']} services, {s['changes']} changes, "
        f"in {result.timings['total']:.1f} s")


@audit_app.command("report-verify")
def report_verify(
    directory: Path = typer.Argument(..., help="The report folder (audit report -o).", show_default=False),
    key: Path = typer.Option(..., "--key", help="Public key file of the operator who signed it.",
                             show_default=False),
) -> None:
    """Check each report file against its detached signature and --key: exit 0 when every file is
    as signed, 1 naming the first that is not."""
    from tvdeploy.audit.report_sign import verify_dir
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.keys.store import key_id, read_public_key_file

    public_key = read_public_key_file(key)
    files = verify_dir(directory, public_key)
    if OPTIONS.json:
        emit_json({"directory": str(directory), "valid": True, "key_id": key_id(public_key), "files": files})
        return
    out(f"{directory}: {', '.join(files)} signed by key {key_id(public_key)[:16]}: intact")


@audit_app.command("restore")
def restore(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    key: Path | None = typer.Option(None, "--key", help="Public key the copy must verify with "
                                    "(default: the operator key).", show_default=False),
) -> None:
    """On a new operator machine: copy the site's audit log (the longest manager copy that
    verifies) to the local state, so new records continue its chain."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.audit_site import restore as restore_log
    from tvdeploy.keys.store import load_public_key, operator_key_name, read_public_key_file

    model = load_site(site)
    public_key = read_public_key_file(key) if key is not None else load_public_key(operator_key_name())
    node, records = restore_log(model, public_key)
    record(model, "audit.restore", objects=[{"type": "node", "name": node, "records": str(records)}])
    if OPTIONS.json:
        emit_json({"site": model.site.name, "from": node, "records": records})
        return
    out(f"audit log of {model.site.name} restored from node {node}: {records} records")
