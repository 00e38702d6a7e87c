"""tvdeploy bundle import SITE BUNDLE --trust ROOT [--yes]: registered on the ``bundle`` group
(discovery loads ``bundle`` before this module)."""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.common import SITE_ARG_HELP


def import_bundle(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    bundle: Path = typer.Argument(..., help="The bundle file or chunk folder.", show_default=False),
    trust_root: Path | None = typer.Option(
        None, "--trust", metavar="ROOT", show_default=False,
        help="Trust root file (default: the site file's trust.root).",
    ),
) -> None:
    """Verify BUNDLE strictly, refuse a replayed or older release, then put its images on the
    site: pushed to the site registry (deployed on first import) or loaded onto every node
    (registry.mode node-load). An interrupted import of the same bundle resumes."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import confirm, emit_json, out, reporter
    from tvdeploy.execute.import_bundle import import_verified, policy_gate, verify_and_check
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.release.import_state import AlreadyImported

    model = load_site(site)
    trust_root = trust_root or model.trust.root
    if trust_root is None:
        from tvdeploy.errors import RefusedError

        raise RefusedError(f"{site}: no trust root: pass --trust ROOT or set trust.root in the site file")
    signing_key()  # no audit key, no import: fail before reading gigabytes
    rep = reporter()
    with open_pool(model, reporter=rep) as pool:
        try:
            verified, last = verify_and_check(model, bundle, trust_root, pool, rep)
        except AlreadyImported as same:  # the same bundle again: a no-op, like `apply` on a converged site
            if OPTIONS.json:
                emit_json({"already_imported": True, "message": same.message})
            else:
                out(f"{bundle}: {same.message}")
            return
        policy_gate(model, site, verified, trust_root)
        rel = verified.verified.bundle.release
        since = f" (last import: {last.release}, sequence {last.sequence})" if last else " (first import)"
        if not OPTIONS.json:
            out(f"{bundle}: verified: release {rel['release']} (sequence {rel['sequence']}), "
                f"{len(rel['images'])} images{since}")
        confirm(f"import release {rel['release']} into site {model.site.name} ({model.registry.mode})?")
        result = import_verified(model, verified, pool, rep)
    if OPTIONS.json:
        emit_json(result.to_json())
        return
    where = result.registry or f"{len(result.nodes)} node(s)"
    out(f"site {model.site.name}: release {result.release} (sequence {result.sequence}) imported into {where}"
        + (" (resumed)" if result.resumed else "")
        + f"; {result.bytes_moved} bytes moved, {result.bytes_skipped} bytes skipped")


def inventory(
    site: Path = typer.Argument(..., help=SITE_ARG_HELP, show_default=False),
    output: Path = typer.Option(..., "-o", "--output", metavar="HAVE.json", help="Inventory file to write.",
                                show_default=False),
) -> None:
    """Write the blob digests the site holds and its last imported release, signed by the
    operator key (input of `bundle build --since` for a delta)."""
    from tvdeploy import state
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.cli.common import load_site
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.import_bundle import site_inventory
    from tvdeploy.execute.ssh_pool import open_pool

    model = load_site(site)
    key, kid = signing_key()
    with open_pool(model) as pool:
        count, last, data = site_inventory(model, pool, (key, kid))
    state.write_atomic(output, data, mode=0o644)
    if OPTIONS.json:
        emit_json({"output": str(output), "blobs": count, "key_id": kid,
                   "last_import": last.to_json() if last else None})
        return
    out(f"{output}: {count} blobs on site {model.site.name} ({model.registry.mode}); last import: "
        + (f"{last.release} (sequence {last.sequence})" if last else "none") + f"; signed by key {kid[:16]}")


def register(app: typer.Typer) -> None:
    from tvdeploy.cli.commands.bundle import bundle_app

    bundle_app.command("import")(import_bundle)
    bundle_app.command("inventory")(inventory)
