"""What the operator machine holds for a site's PKI: read-only view for the planner."""

from __future__ import annotations

from dataclasses import dataclass

from tvdeploy.pki.ca import CAPaths


@dataclass(frozen=True)
class LocalPki:
    ca_pem: bytes | None  # None: no site CA yet (the plan creates one)
    client_cert_pem: bytes | None
    client_key_public_sha256: str | None  # of the client key, to check it matches the cert
    client_ca_pem: bytes | None  # the ca.pem copy beside the client certificate


def read_local_pki(paths: CAPaths) -> LocalPki:
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.pki.certinfo import public_key_fingerprint

    def read(p: object) -> bytes | None:
        from pathlib import Path

        path = Path(str(p))
        return path.read_bytes() if path.is_file() else None

    key_fp = None
    key_pem = read(paths.client_dir / "key.pem")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            key_fp = public_key_fingerprint(key.public_key())
        except (ValueError, TypeError):
            key_fp = None  # damaged or encrypted: the planner re-issues
    return LocalPki(
        ca_pem=read(paths.cert) if paths.key.exists() else None,
        client_cert_pem=read(paths.client_dir / "cert.pem"),
        client_key_public_sha256=key_fp,
        client_ca_pem=read(paths.client_dir / "ca.pem"),
    )
