"""Sign certificates with the site CA: node server certificates from CSRs made ON the node, and
the operator's short-lived client certificate (whose key is made here, for this machine only).

A CSR only contributes its public key: subject, SANs and EKU come from the site file, so a node
cannot ask for a name it does not have.
"""

from __future__ import annotations

import getpass
import logging
import shlex
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import state
from tvdeploy.errors import VerificationError
from tvdeploy.pki.ca import SiteCA, new_private_key
from tvdeploy.pki.certinfo import BACKDATE

if TYPE_CHECKING:
    from cryptography import x509

    from tvdeploy.config.site import Node, Site

log = logging.getLogger(__name__)

MAX_CSR = 16 * 1024
MIN_RSA_BITS = 2048
ALLOWED_CURVES = ("secp256r1", "secp384r1")


@dataclass(frozen=True)
class ServerNames:
    dns: tuple[str, ...]
    ips: tuple[str, ...]


# The node makes its own key; only the CSR leaves it. umask 077 so the key is never readable
# by anyone else, even for the instant before chmod.
KEYGEN = (
    "set -e; umask 077; mkdir -p {dir}; "
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key} 2>/dev/null; "
    "chown root:root {key}; chmod 0400 {key}; "
    "openssl req -new -key {key} -subj {subj} -outform PEM"
)


def keygen_command(key_dir: str, key_path: str, common_name: str) -> str:
    """The shell command that makes a P-256 key at *key_path* on a node (0400, root) and prints
    a CSR for it with subject ``/CN=<common_name>``."""
    q = shlex.quote
    return KEYGEN.format(dir=q(key_dir), key=q(key_path), subj=q(f"/CN={common_name}"))


def server_names(site: Site, node: Node, extra_ips: tuple[str, ...] = ()) -> ServerNames:
    """SANs of a node's server certificate: its host name (and FQDN) and every address."""
    dns = [node.name]
    if site.network.domain:
        dns.append(f"{node.name}.{site.network.domain}")
    ips = [str(node.address)]
    ips += [ip for ip in extra_ips if ip not in ips]
    return ServerNames(dns=tuple(dns), ips=tuple(ips))


def _check_public_key(public_key: Any, where: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_CURVES:
            raise VerificationError(f"{where}: CSR uses curve {public_key.curve.name}; allowed: "
                                    + ", ".join(ALLOWED_CURVES))
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise VerificationError(f"{where}: CSR has a {public_key.key_size}-bit RSA key; "
                                    f"at least {MIN_RSA_BITS} required")
        return
    raise VerificationError(f"{where}: CSR key type {type(public_key).__name__} is not allowed "
                            "(EC P-256/P-384 or RSA)")


def load_csr(csr_pem: bytes, where: str) -> x509.CertificateSigningRequest:
    """Parse and check a CSR: well-formed PEM, self-signature valid, an acceptable key."""
    from cryptography import x509 as _x509

    if len(csr_pem) > MAX_CSR:
        raise VerificationError(f"{where}: CSR is too large ({len(csr_pem)} bytes)")
    try:
        csr = _x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise VerificationError(f"{where}: not a valid PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # noqa: BLE001 - unsupported algorithms raise various types
        valid = False
    if not valid:
        raise VerificationError(f"{where}: CSR signature does not verify (tampered or truncated)")
    _check_public_key(csr.public_key(), where)
    return csr


def _name(cn: str, org: str) -> x509.Name:
    from cryptography import x509 as _x509
    from cryptography.x509.oid import NameOID

    return _x509.Name([
        _x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        _x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _build(ca: SiteCA, subject: x509.Name, public_key: Any, days: int, now: datetime,
           eku_server: bool, sans: ServerNames | None) -> x509.Certificate:
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        _x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(_x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(_x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                           data_encipherment=False, key_agreement=False, key_cert_sign=False,
                           crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(
            _x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if eku_server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            _x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if sans is not None:
        general: list[_x509.GeneralName] = [_x509.DNSName(d) for d in sans.dns]
        general += [_x509.IPAddress(ip_address(ip)) for ip in sans.ips]
        builder = builder.add_extension(_x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def sign_server_csr(ca: SiteCA, csr_pem: bytes, node_name: str, site_name: str, names: ServerNames,
                    days: int, now: datetime) -> x509.Certificate:
    """Sign a node's CSR as a server certificate (EKU serverAuth) for exactly *names*."""
    where = f"node {node_name}"
    csr = load_csr(csr_pem, where)
    return _build(ca, _name(node_name, f"tvdeploy {site_name}"), csr.public_key(), days, now,
                  eku_server=True, sans=names)


def sign_client_csr(ca: SiteCA, csr_pem: bytes, node_name: str, site_name: str, days: int,
                    now: datetime) -> x509.Certificate:
    """Sign a node's CSR as a client certificate (EKU clientAuth, no SANs), e.g. the one its
    dockerd presents to the site registry; the subject names the node, not what the CSR asks."""
    csr = load_csr(csr_pem, f"node {node_name}")
    return _build(ca, _name(f"{node_name} registry client", f"tvdeploy {site_name}"), csr.public_key(), days,
                  now, eku_server=False, sans=None)


def record_issued(ca: SiteCA, node_name: str, cert: x509.Certificate) -> Path:
    """Keep a copy of every issued server certificate (public) for status and audit."""
    from cryptography.hazmat.primitives import serialization

    path = ca.paths.issued_dir / f"{node_name}.pem"
    state.write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return path


def operator_identity() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "operator"
    return f"{user}@{socket.gethostname()}"


def issue_client_cert(ca: SiteCA, site_name: str, days: int, now: datetime) -> x509.Certificate:
    """A new operator client certificate (EKU clientAuth) with a new key, written as
    ``client/{ca,cert,key}.pem`` (the layout DOCKER_CERT_PATH expects); key 0600."""
    from cryptography.hazmat.primitives import serialization

    key = new_private_key("ec-p256")
    cert = _build(ca, _name(f"tvdeploy operator {operator_identity()}", f"tvdeploy {site_name}"),
                  key.public_key(), days, now, eku_server=False, sans=None)
    d = ca.paths.client_dir
    state.ensure_dir(d)
    # Key first, then certificate: a half-finished issue leaves an unusable pair that the next
    # plan detects (key and certificate do not match) instead of a certificate without its key.
    state.write_atomic(d / "key.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ), mode=0o600)
    state.write_atomic(d / "cert.pem", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    state.write_atomic(d / "ca.pem", ca.cert_pem, mode=0o644)
    log.debug("issued client certificate %s", d / "cert.pem")
    return cert
