"""Shared builders for the TLS unit tests: a site model, CSRs made the way a node makes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SITE_DOC: dict[str, Any] = {
    "version": 1,
    "site": {"name": "plant-t"},
    "network": {"subnet": "10.30.0.0/24", "domain": "plant-t.example"},
    "nodes": [
        {"name": "tv-mgr-1", "role": "manager", "address": "10.30.0.11", "zone": "core"},
        {"name": "tv-wrk-1", "role": "worker", "address": "10.30.0.21", "zone": "edge"},
    ],
    "ssh": {"user": "root", "known_hosts": "known_hosts"},
    "pki": {"ca_passphrase": "env:TEST_CA_PASSPHRASE"},
}


def make_site(tmp_path: Path, **overrides: Any) -> Any:
    from tvdeploy.config.site import Site

    doc = {**SITE_DOC, **overrides, "state_dir": str(tmp_path / "state")}
    return Site.model_validate(doc, context={"base_dir": tmp_path})


def node_csr(cn: str = "tv-mgr-1", key: Any = None) -> tuple[bytes, Any]:
    """A CSR as `openssl req -new` on a node makes it (the key never leaves the 'node')."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), key
