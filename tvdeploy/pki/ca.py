"""The site CA: one per site in ``<site state>/pki/``; its key encrypted with ``pki.ca_passphrase``.

Files: ``ca.pem`` (certificate, 0644) and ``ca-key.pem`` (PKCS#8, encrypted, 0600). The CA signs
node server certificates (from CSRs made on the nodes) and the operator's client certificate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tvdeploy import state
from tvdeploy.config.secrets import Secret
from tvdeploy.errors import InputFileError, SecretError, VerificationError
from tvdeploy.pki.certinfo import BACKDATE, load_cert_pem, public_key_fingerprint

if TYPE_CHECKING:
    from cryptography import x509

    from tvdeploy.config.site import Site

log = logging.getLogger(__name__)

KeyType = Literal["ec-p256", "rsa-3072"]
CA_DAYS = 3650
MAX_PEM = 64 * 1024


@dataclass(frozen=True)
class CAPaths:
    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def client_dir(self) -> Path:
        return self.root / "client"

    @property
    def issued_dir(self) -> Path:
        return self.root / "issued"


@dataclass(frozen=True)
class SiteCA:
    cert: x509.Certificate
    key: Any  # EllipticCurvePrivateKey | RSAPrivateKey
    paths: CAPaths

    @property
    def cert_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)


def pki_paths(site: Site) -> CAPaths:
    return CAPaths(state.site_dir(site.site.name, site.state_dir) / "pki")


def ca_passphrase(site: Site) -> Secret | None:
    from tvdeploy.config.secrets import resolve_secret

    ref = site.pki.ca_passphrase
    return None if ref is None else resolve_secret(ref, "pki.ca_passphrase")


def new_private_key(key_type: KeyType = "ec-p256") -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if len(data) > MAX_PEM:
        raise InputFileError(f"{path}: {what} is too large ({len(data)} bytes)")
    return data


def create_ca(paths: CAPaths, site_name: str, passphrase: Secret | None, now: datetime,
              key_type: KeyType = "ec-p256") -> SiteCA:
    """Make a new self-signed CA; the key file is written (encrypted) before the certificate so
    a crash never leaves a certificate without its key."""
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = new_private_key(key_type)
    name = _x509.Name([
        _x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tvdeploy"),
        _x509.NameAttribute(NameOID.COMMON_NAME, f"tvdeploy site CA {site_name}"),
    ])
    ski = _x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(_x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                           crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.reveal().encode())
        if passphrase is not None
        else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    state.ensure_dir(paths.root)
    state.write_atomic(paths.key, key_pem, mode=0o600)
    state.write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.debug("created site CA %s (%s)", paths.cert, key_type)
    return SiteCA(cert=cert, key=key, paths=paths)


def load_ca_cert(paths: CAPaths) -> x509.Certificate:
    return load_cert_pem(_read(paths.cert, "site CA certificate"), str(paths.cert))


def load_ca(paths: CAPaths, passphrase: Secret | None) -> SiteCA:
    """Load the CA with its key; a wrong passphrase or a key that does not match is one line."""
    from cryptography.hazmat.primitives import serialization

    cert = load_ca_cert(paths)
    key_pem = _read(paths.key, "site CA key")
    try:
        key = serialization.load_pem_private_key(
            key_pem, password=passphrase.reveal().encode() if passphrase is not None else None
        )
    except TypeError:
        if passphrase is None:
            raise SecretError(f"{paths.key}: the site CA key is encrypted; set pki.ca_passphrase") from None
        raise SecretError(f"{paths.key}: the site CA key is not encrypted but pki.ca_passphrase is set; "
                          "refusing to use an unprotected CA key") from None
    except ValueError:
        # cryptography says "Bad decrypt" for a wrong passphrase and "Could not deserialize"
        # for a damaged file; both must name the file and never the passphrase.
        raise SecretError(f"{paths.key}: cannot decrypt the site CA key: wrong pki.ca_passphrase "
                          "or a damaged key file") from None
    if public_key_fingerprint(key.public_key()) != public_key_fingerprint(cert.public_key()):
        raise VerificationError(f"{paths.key}: the site CA key does not belong to {paths.cert}")
    return SiteCA(cert=cert, key=key, paths=paths)


def ca_exists(paths: CAPaths) -> bool:
    return paths.cert.exists() and paths.key.exists()


def load_or_create_ca(site: Site, now: datetime) -> tuple[SiteCA, bool]:
    """The site's CA, created on first use; returns (ca, created)."""
    paths = pki_paths(site)
    secret = ca_passphrase(site)
    if ca_exists(paths):
        return load_ca(paths, secret), False
    if paths.cert.exists() != paths.key.exists():
        missing = paths.key if paths.cert.exists() else paths.cert
        raise InputFileError(f"{missing}: missing while the other half of the site CA exists; "
                             "restore it from backup (a new CA would orphan every node certificate)")
    return create_ca(paths, site.site.name, secret, now), True
