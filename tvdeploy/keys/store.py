"""The operator key store: Ed25519 keys in ``$TVDEPLOY_HOME/keys/``.

``NAME.key`` is PKCS#8 PEM, encrypted with the passphrase unless created with no passphrase,
mode 0600; ``NAME.pub`` is the SubjectPublicKeyInfo PEM. A key id is the lowercase hex SHA-256
of the raw 32-byte public key (ARCHITECTURE.md). Private keys never leave this folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvdeploy import state
from tvdeploy.config.secrets import Secret, resolve_secret
from tvdeploy.errors import InputFileError, SecretError, TvdeployError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
OPERATOR_KEY_ENV = "TVDEPLOY_OPERATOR_KEY"
PASSPHRASE_ENV = "TVDEPLOY_KEY_PASSPHRASE"  # noqa: S105 - holds a reference (env:VAR / file:PATH), not a secret
MAX_KEY_FILE = 16 * 1024


@dataclass(frozen=True)
class KeyInfo:
    name: str
    key_id: str
    encrypted: bool
    private_path: Path
    public_path: Path


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()


def _check_name(name: str) -> None:
    if not KEY_NAME.fullmatch(name):
        raise TvdeployError(f"{name!r}: not a valid key name (letters, digits, '.', '_', '-'; max 64)")


def _paths(name: str) -> tuple[Path, Path]:
    _check_name(name)
    base = state.keys_dir()
    return base / f"{name}.key", base / f"{name}.pub"


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_key(name: str, passphrase: Secret | None) -> KeyInfo:
    """Create key *name*; refuses to overwrite an existing key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    priv_path, pub_path = _paths(name)
    if priv_path.exists() or pub_path.exists():
        raise TvdeployError(f"key {name!r} already exists in {priv_path.parent}")
    private_key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption
    if passphrase is not None:
        if not passphrase.reveal():
            raise SecretError("the passphrase is empty")
        encryption = serialization.BestAvailableEncryption(passphrase.reveal().encode())
    else:
        encryption = serialization.NoEncryption()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    state.ensure_dir(priv_path.parent)
    state.write_atomic(priv_path, pem, mode=0o600)
    state.write_atomic(pub_path, public_pem(private_key.public_key()), mode=0o644)
    return KeyInfo(name, key_id(private_key.public_key()), passphrase is not None, priv_path, pub_path)


def _is_encrypted(pem: bytes) -> bool:
    return b"ENCRYPTED PRIVATE KEY" in pem


def list_keys() -> list[KeyInfo]:
    base = state.keys_dir()
    if not base.is_dir():
        return []
    infos = []
    for pub_path in sorted(base.glob("*.pub")):
        name = pub_path.stem
        try:
            pub = read_public_key_file(pub_path)
        except TvdeployError:
            continue
        priv_path = base / f"{name}.key"
        encrypted = priv_path.exists() and _is_encrypted(priv_path.read_bytes()[:100])
        infos.append(KeyInfo(name, key_id(pub), encrypted, priv_path, pub_path))
    return infos


def read_public_key_file(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key: PEM (SubjectPublicKeyInfo) or 64 hex digits of the raw key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tvdeploy.inputs import read_input

    data = read_input(path, "public key file", MAX_KEY_FILE)
    text = data.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputFileError(f"{path}: not an Ed25519 public key")
    return key


def load_public_key(name: str) -> Ed25519PublicKey:
    _priv, pub_path = _paths(name)
    if not pub_path.exists():
        raise TvdeployError(f"no key named {name!r} in {pub_path.parent} (tvdeploy keys list)")
    return read_public_key_file(pub_path)


def passphrase_from_reference(ref: str | None, what: str) -> Secret | None:
    """Resolve ``--passphrase env:VAR|file:PATH`` (or $TVDEPLOY_KEY_PASSPHRASE)."""
    ref = ref or os.environ.get(PASSPHRASE_ENV)
    if not ref:
        return None
    return resolve_secret(ref, what)


def load_private_key(name: str, passphrase: Secret | None = None) -> Ed25519PrivateKey:
    """Load private key *name*. An encrypted key needs *passphrase*, else $TVDEPLOY_KEY_PASSPHRASE,
    else a prompt on a terminal."""
    import sys

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    priv_path, _pub = _paths(name)
    if not priv_path.exists():
        raise TvdeployError(
            f"no private key named {name!r} in {priv_path.parent}; create it with "
            f"'tvdeploy keys generate {name}'"
        )
    mode = priv_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise TvdeployError(f"{priv_path}: private key is readable by others (mode {mode:o}); chmod 600 it")
    if priv_path.stat().st_size > MAX_KEY_FILE:
        raise InputFileError(f"{priv_path}: too large for a key file")
    pem = priv_path.read_bytes()
    password: bytes | None = None
    if _is_encrypted(pem):
        if passphrase is None:
            passphrase = passphrase_from_reference(None, PASSPHRASE_ENV)
        if passphrase is None and sys.stdin is not None and sys.stdin.isatty():
            import getpass

            passphrase = Secret(getpass.getpass(f"passphrase for key {name}: "))
        if passphrase is None:
            raise SecretError(
                f"key {name!r} is encrypted: give its passphrase ({PASSPHRASE_ENV}=env:VAR or "
                "file:PATH, or run on a terminal)"
            )
        password = passphrase.reveal().encode()
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise SecretError(f"key {name!r}: wrong passphrase or damaged key file {priv_path}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputFileError(f"{priv_path}: not an Ed25519 private key")
    return key


def load_signers(names: list[str], passphrase_ref: str | None) -> list[tuple[Ed25519PrivateKey, str]]:
    """(private key, key id) of each key in *names* (once each, in order), for ``--key NAME``
    options with one ``--passphrase env:VAR|file:PATH``."""
    secret = passphrase_from_reference(passphrase_ref, "--passphrase")
    signers = []
    for name in dict.fromkeys(names):
        private_key = load_private_key(name, secret)
        signers.append((private_key, key_id(private_key.public_key())))
    return signers


def key_names() -> dict[str, str]:
    """Key id -> name of every key in the local store (to show names beside key ids)."""
    return {k.key_id: k.name for k in list_keys()}


def operator_key_name() -> str:
    return os.environ.get(OPERATOR_KEY_ENV, "operator")
