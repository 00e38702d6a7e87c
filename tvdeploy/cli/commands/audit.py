"""tvdeploy audit verify LOG --key PUBKEY | verify SITE | show SITE | checkpoint SITE | repair LOG
(report and report-verify: tvdeploy.cli.commands.audit_report)"""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP

audit_app = typer.Typer(help="Verify and read the signed, hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    log: Path = typer.Argument(..., help="The audit log (audit.log), or a site file (.yaml): then the local "
                               "log and each manager's copy.", show_default=False),
    key: Path | None = typer.Option(None, "--key", help="Public key file of the operator who signed it "
                                    "(required for a log file; default for a site: the operator key).",
                                    show_default=False),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints",
        help="Signed checkpoints file; default: audit.checkpoints beside LOG when it exists.",
        show_default=False),
) -> None:
    """Check every record's signature (against --key only), seq and hash chain, and the
    checkpoints: exit 0 when intact, 1 naming the first bad record."""
    import sys

    from tvdeploy.audit.log import checkpoints_path
    from tvdeploy.audit.verify import verify_log
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import VerificationError, require_file
    from tvdeploy.keys.store import read_public_key_file

    if log.suffix in (".yaml", ".yml"):
        _verify_site(log, key)
        return
    if key is None:
        raise typer.BadParameter("--key is required to verify a log file")
    require_file(log, "audit log")
    public_key = read_public_key_file(key)
    if checkpoints is None and checkpoints_path(log).exists():
        checkpoints = checkpoints_path(log)
    elif checkpoints is not None:
        require_file(checkpoints, "checkpoints file")
    result = verify_log(log, public_key, checkpoints)
    bad = result.first_bad
    if OPTIONS.json:
        emit_json(result.document())
        if bad is not None:
            # One JSON document on stdout, the one error line on stderr, exit 1.
            print(f"error: {bad.file}: line {bad.line} (seq {bad.seq}): {bad.reason}", file=sys.stderr)
            raise typer.Exit(1)
        return
    if bad is not None:
        raise VerificationError(f"{bad.file}: line {bad.line} (seq {bad.seq}): {bad.reason}")
    n = result.checkpoints
    cps = f", {n} checkpoint{'' if n == 1 else 's'}" if checkpoints is not None else ", no checkpoints file"
    out(f"{log}: intact ({result.records} record{'' if result.records == 1 else 's'}{cps}; "
        f"key {result.key_id[:16]})")


@audit_app.command("show")
def show(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    last: int | None = typer.Option(None, "--last", min=1, help="Only the last N records."),
) -> None:
    """List the records of SITE's audit log (no verification: use 'audit verify' for that)."""
    from tvdeploy.audit.recorder import site_log_path
    from tvdeploy.audit.show import read_records, summary
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table, warn

    model = load_site(site)
    path = site_log_path(model)
    source = "local"
    from tvdeploy.execute.audit_site import open_site_log, pinned_managers

    if not path.exists() and pinned_managers(model):  # a lost laptop: the managers' copies
        src = open_site_log(model)
        try:
            listing = read_records(src.log_path, last)
        finally:
            src.close()
        source = src.source
        warn(f"{path}: no local audit log; read from the site's copy on {source}")
    else:
        listing = read_records(path, last)
    if listing.torn:
        warn(f"{path}: the last record is incomplete (a write was interrupted)")
    if OPTIONS.json:
        emit_json({"site": model.site.name, "log": str(path), "source": source, "records": listing.records,
                   "unreadable_lines": listing.unreadable})
        return
    if not listing.records:
        out(f"{path}: no records yet")
        return
    table(f"audit log of {model.site.name}", ["seq", "time", "event", "actor", "objects", "outcome"],
          [summary(r) for r in listing.records])


def _verify_site(site_file: Path, key: Path | None) -> None:
    """`audit verify SITE`: the local log and every manager's copy, and what each side lacks."""
    import sys

    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import VerificationError
    from tvdeploy.execute.audit_site import verify_site
    from tvdeploy.keys.store import load_public_key, operator_key_name, read_public_key_file

    model = load_site(site_file)
    public_key = read_public_key_file(key) if key is not None else load_public_key(operator_key_name())
    doc = verify_site(model, public_key)
    problems = doc["problems"]
    if OPTIONS.json:
        emit_json(doc)
        if problems:
            print(f"error: {problems[0]}", file=sys.stderr)
            raise typer.Exit(1)
        return
    if problems:
        raise VerificationError(problems[0], details=problems[1:])
    sides = ([f"local ({doc['local']['records']} records)"] if doc["local"] else ["no local log"]) + \
        [f"node {c['node']} ({c['verify']['records']} records)" for c in doc["copies"]]
    out(f"site {model.site.name}: audit log intact and identical on every side: {', '.join(sides)}")


@audit_app.command("checkpoint")
def checkpoint(site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False)) -> None:
    """Write a signed checkpoint of SITE's audit log now (seq + chain hash)."""
    from tvdeploy.audit.log import checkpoints_path
    from tvdeploy.audit.recorder import site_log_path, write_checkpoint
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out

    model = load_site(site)
    path = site_log_path(model)
    head = write_checkpoint(path, model.site.name)
    if OPTIONS.json:
        emit_json({"site": model.site.name, "seq": head.seq, "chain_hash": head.hash,
                   "checkpoints": str(checkpoints_path(path))})
        return
    out(f"checkpoint at seq {head.seq} written to {checkpoints_path(path)}")


@audit_app.command("repair")
def repair(log: Path = typer.Argument(..., help="The audit log (audit.log).", show_default=False)) -> None:
    """After a crash mid-append: move the torn last line of LOG (and of its checkpoints file)
    to a file beside it, cut it off, and record the repair in the log."""
    from tvdeploy.audit.recorder import repair as repair_log
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json, out
    from tvdeploy.errors import require_file

    require_file(log, "audit log")
    confirm(f"cut the torn last line of {log} (kept in a file beside it)?")
    fragments = repair_log(log)
    if OPTIONS.json:
        emit_json({"log": str(log), "fragments": [
            {"file": str(f.source), "saved_as": str(f.saved_as), "size": f.size, "digest": f.digest}
            for f in fragments]})
        return
    if not fragments:
        out(f"{log}: no torn line, nothing to repair")
    for f in fragments:
        out(f"{f.source}: cut {f.size} torn bytes, kept in {f.saved_as}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
