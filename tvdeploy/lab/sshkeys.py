"""Ed25519 keys in OpenSSH format for the lab: the operator's lab key and node host keys."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.state import write_atomic


def ensure_keypair(private_path: Path, comment: str) -> str:
    """Create *private_path* (0600) and ``.pub`` unless present; return the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub_path = private_path.with_name(private_path.name + ".pub")
    if private_path.exists() and pub_path.exists():
        return pub_path.read_text().strip()
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    write_atomic(private_path, private, mode=0o600)
    write_atomic(pub_path, (line + "\n").encode(), mode=0o644)
    return line


def known_hosts_line(address: str, public_line: str) -> str:
    """``ADDRESS ssh-ed25519 AAAA...`` (the comment is dropped)."""
    kind, blob = public_line.split()[:2]
    return f"{address} {kind} {blob}"
