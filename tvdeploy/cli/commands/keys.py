"""tvdeploy keys generate NAME | list | export-public NAME -o FILE"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tvdeploy.config.secrets import Secret

keys_app = typer.Typer(help="Ed25519 keys in the operator key store (operator key, bundle signers).",
                       no_args_is_help=True)

NO_TTY_HINT = (
    "give --passphrase env:VAR or file:PATH (or set TVDEPLOY_KEY_PASSPHRASE), run on a terminal to "
    "be prompted, or pass --no-passphrase to store the key unencrypted"
)


def _prompt_passphrase(name: str) -> Secret:
    import getpass

    from tvdeploy.config.secrets import Secret
    from tvdeploy.errors import SecretError

    first = getpass.getpass(f"passphrase for new key {name}: ")
    if not first:
        raise SecretError("the passphrase is empty")
    if getpass.getpass("again: ") != first:
        raise SecretError("the passphrases do not match")
    return Secret(first)


@keys_app.command("generate")
def generate(
    name: str = typer.Argument(..., help="Key name, e.g. operator, signer-1.", show_default=False),
    no_passphrase: bool = typer.Option(False, "--no-passphrase",
                                       help="Store the private key unencrypted (labs, CI)."),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help="Where the passphrase comes from (never inline)."),
) -> None:
    """Generate an Ed25519 key pair NAME (private key encrypted, 0600). The first key must be
    the operator key: it signs the audit record of every key generated after it."""
    import sys

    from tvdeploy import state
    from tvdeploy.audit.recorder import record_global, signing_key
    from tvdeploy.cli.output import out, warn
    from tvdeploy.errors import RefusedError, SecretError, TvdeployError
    from tvdeploy.keys.store import KEY_NAME, generate_key, operator_key_name, passphrase_from_reference

    if no_passphrase and passphrase:
        raise typer.BadParameter("--no-passphrase and --passphrase exclude each other")
    if not KEY_NAME.fullmatch(name):
        raise TvdeployError(f"{name!r}: not a valid key name (letters, digits, '.', '_', '-'; max 64)")
    base = state.keys_dir()
    if (base / f"{name}.key").exists() or (base / f"{name}.pub").exists():
        raise RefusedError(f"key {name!r} already exists in {base}")
    operator = operator_key_name()
    if name != operator:
        if not (base / f"{operator}.key").exists():
            raise RefusedError(
                f"create the operator key first ('tvdeploy keys generate {operator}'): it signs the "
                "audit record of every key generated"
            )
        signing_key()  # unlock the operator key before anything is made
    secret = None
    if not no_passphrase:
        secret = passphrase_from_reference(passphrase, "--passphrase")
        if secret is None:
            if sys.stdin is None or not sys.stdin.isatty():
                raise SecretError(f"key {name!r} needs a passphrase and there is no terminal: "
                                  f"{NO_TTY_HINT}")
            secret = _prompt_passphrase(name)
    info = generate_key(name, secret)
    if name == operator:
        signing_key(secret)  # cached now: the record below does not prompt again
    record_global("key.generate", objects=[
        {"type": "key", "name": name, "key_id": info.key_id,
         "encrypted": "yes" if info.encrypted else "no"},
    ])
    if not info.encrypted:
        warn(f"key {name} is stored unencrypted ({info.private_path})")
    out(f"key {name} generated: key id {info.key_id}")


@keys_app.command("list")
def list_() -> None:
    """List the keys in the operator key store: name, key id, encrypted."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.keys.store import list_keys

    keys = list_keys()
    if OPTIONS.json:
        emit_json({"keys": [{"name": k.name, "key_id": k.key_id, "encrypted": k.encrypted}
                            for k in keys]})
        return
    if not keys:
        out("no keys yet (tvdeploy keys generate operator)")
        return
    table(None, ["name", "key id", "encrypted"],
          [[k.name, k.key_id, "yes" if k.encrypted else "no"] for k in keys])


@keys_app.command("export-public")
def export_public(
    name: str = typer.Argument(..., help="Key name.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="File to write the public key PEM to.",
                                show_default=False),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
) -> None:
    """Write the public key of NAME (SubjectPublicKeyInfo PEM) to FILE, for trust roots and
    'audit verify --key'. The private key never leaves the key store."""
    from tvdeploy import state
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import InputFileError, RefusedError
    from tvdeploy.keys.store import key_id, load_public_key, public_pem

    public_key = load_public_key(name)
    if output.is_dir():
        raise InputFileError(f"{output}: is a directory, expected a file name")
    if not output.parent.is_dir():
        raise InputFileError(f"{output}: folder {output.parent} does not exist")
    if output.exists() and not force:
        raise RefusedError(f"{output}: already exists (--force overwrites it)")
    state.write_atomic(output, public_pem(public_key), mode=0o644)
    kid = key_id(public_key)
    if OPTIONS.json:
        emit_json({"name": name, "key_id": kid, "file": str(output)})
        return
    out(f"public key of {name} (key id {kid}) written to {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
