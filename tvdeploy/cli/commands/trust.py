"""tvdeploy trust init | add-signer | revoke | show"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

trust_app = typer.Typer(help="Trust roots: who may sign bundles, how many must.", no_args_is_help=True)

PASSPHRASE_HELP = "Where the root keys' passphrase comes from (env:VAR or file:PATH)."  # noqa: S105 - help text, not a secret


def _root_keys(names: list[str], passphrase: str | None) -> list[Any]:
    from tvdeploy.keys.store import load_private_key, passphrase_from_reference

    secret = passphrase_from_reference(passphrase, "--passphrase")
    return [load_private_key(n, secret) for n in names]


def _expires(value: str) -> Any:
    from datetime import UTC, datetime

    from tvdeploy.bundle.trust import parse_time
    from tvdeploy.errors import TvdeployError

    try:
        when = parse_time(value)
    except ValueError as exc:
        raise TvdeployError(f"--expires: {exc}") from None
    if when <= datetime.now(UTC):
        raise TvdeployError(f"--expires {value}: is in the past")
    return when


def _write(output: Path, chain: list[Any], event: str, extra: list[dict[str, str]]) -> None:
    from tvdeploy import state
    from tvdeploy.audit.recorder import record_global
    from tvdeploy.bundle.trust import chain_document
    from tvdeploy.errors import InputFileError

    if output.is_dir():
        raise InputFileError(f"{output}: is a directory, expected a file name")
    if not output.parent.is_dir():
        raise InputFileError(f"{output}: folder {output.parent} does not exist")
    data = chain_document(chain)
    state.write_atomic(output, data, mode=0o644)
    import hashlib

    record_global(event, objects=[
        {"type": "trust_root", "name": str(output.resolve()), "version": str(chain[-1].version),
         "digest": "sha256:" + hashlib.sha256(data).hexdigest()},
        *extra,
    ])


def _show(path: Path, chain: list[Any], root: Any) -> None:
    from tvdeploy.bundle.trust import format_time
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.keys.store import list_keys

    names = {k.key_id: k.name for k in list_keys()}
    if OPTIONS.json:
        emit_json({"file": str(path), "version": root.version, "versions": len(chain),
                   "expires": format_time(root.expires), "threshold": root.threshold,
                   "signers": {k: {"roles": list(s.roles), "name": names.get(k),
                                   "expires": format_time(s.expires) if s.expires else None}
                               for k, s in root.signers.items()},
                   "root_keys": {k: {"name": names.get(k)} for k in root.root_keys},
                   "root_threshold": root.root_threshold, "revoked": list(root.revoked)})
        return
    out(f"{path}: trust root version {root.version} (chain of {len(chain)} verified), expires "
        f"{format_time(root.expires)}; bundles need {root.threshold} of {len(root.signers)} signers; "
        f"changes need {root.root_threshold} of {len(root.root_keys)} root keys")
    rows = [[k, names.get(k, ""), "signer", ",".join(s.roles)] for k, s in root.signers.items()]
    rows += [[k, names.get(k, ""), "root", ""] for k in root.root_keys]
    rows += [[k, names.get(k, ""), "revoked", ""] for k in root.revoked]
    table(None, ["key id", "name", "kind", "roles"], rows)


@trust_app.command("init")
def init(
    output: Path = typer.Option(..., "-o", "--output", help="Trust root file to write.", show_default=False),
    signer: list[Path] = typer.Option(..., "--signer", metavar="FILE",
                                      help="Public key file of a bundle signer (repeat).", show_default=False),
    threshold: int = typer.Option(..., "--threshold", metavar="M",
                                  help="Distinct signer keys a bundle needs.", show_default=False),
    root_key: list[str] = typer.Option(..., "--root-key", metavar="NAME",
                                       help="Key store name of a root key (repeat).", show_default=False),
    expires: str = typer.Option(..., "--expires", metavar="DATE", help="YYYY-MM-DD or ISO 8601 time.",
                                show_default=False),
    root_threshold: int | None = typer.Option(None, "--root-threshold", metavar="K",
                                              help="Root keys a new version needs [default: all]."),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help=PASSPHRASE_HELP),
) -> None:
    """Write version 1 of a trust root, signed by its root keys."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.bundle.trust import init_chain
    from tvdeploy.errors import RefusedError
    from tvdeploy.keys.store import read_public_key_file

    if output.exists():
        raise RefusedError(f"{output}: already exists; a trust root is changed with add-signer/revoke")
    when = _expires(expires)
    signers = [read_public_key_file(p) for p in signer]
    keys = _root_keys(root_key, passphrase)
    signing_key()
    chain = init_chain(signers=signers, threshold=threshold, root_keys=keys, root_threshold=root_threshold,
                       expires=when)
    _write(output, chain, "trust.init", [])
    _show(output, chain, chain[-1])


@trust_app.command("add-signer")
def add_signer(
    root: Path = typer.Argument(..., help="Current trust root file.", show_default=False),
    signer: list[Path] = typer.Option(..., "--signer", metavar="FILE", help="Public key file (repeat).",
                                      show_default=False),
    root_key: list[str] = typer.Option(..., "--root-key", metavar="NAME", help="Root key name (repeat).",
                                       show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="File for the next version.", show_default=False),
    threshold: int | None = typer.Option(None, "--threshold", metavar="M", help="New signer threshold."),
    expires: str | None = typer.Option(None, "--expires", metavar="DATE", help="New expiry."),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help=PASSPHRASE_HELP),
) -> None:
    """Write the next version of ROOT with more signers, signed by ROOT's root keys."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.bundle.trust import load_verified, next_version
    from tvdeploy.keys.store import key_id, read_public_key_file

    chain, _current = load_verified(root)
    when = _expires(expires) if expires else None
    pubs = [read_public_key_file(p) for p in signer]
    keys = _root_keys(root_key, passphrase)
    signing_key()
    new = next_version(chain, sign_with=keys, where=str(output), add=pubs, threshold=threshold, expires=when)
    _write(output, new, "trust.add-signer", [{"type": "key", "key_id": key_id(p)} for p in pubs])
    _show(output, new, new[-1])


@trust_app.command("revoke")
def revoke(
    root: Path = typer.Argument(..., help="Current trust root file.", show_default=False),
    key: str = typer.Argument(..., metavar="KEYID", help="Key id (or a unique prefix of 8+).", show_default=False),
    root_key: list[str] = typer.Option(..., "--root-key", metavar="NAME", help="Root key name (repeat).",
                                       show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="File for the next version.", show_default=False),
    threshold: int | None = typer.Option(None, "--threshold", metavar="M", help="New signer threshold."),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help=PASSPHRASE_HELP),
) -> None:
    """Write the next version of ROOT with KEYID revoked, signed by ROOT's root keys."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.bundle.trust import load_verified, next_version, resolve_key_id

    chain, current = load_verified(root)
    kid = resolve_key_id(current, key)
    keys = _root_keys(root_key, passphrase)
    signing_key()
    new = next_version(chain, sign_with=keys, where=str(output), revoke=[kid], threshold=threshold)
    _write(output, new, "trust.revoke", [{"type": "key", "key_id": kid}])
    _show(output, new, new[-1])


@trust_app.command("show")
def show(root: Path = typer.Argument(..., help="Trust root file.", show_default=False)) -> None:
    """Verify the chain of ROOT and show its newest version."""
    from tvdeploy.bundle.trust import load_verified

    chain, current = load_verified(root)
    _show(root, chain, current)


def register(app: typer.Typer) -> None:
    app.add_typer(trust_app, name="trust")
