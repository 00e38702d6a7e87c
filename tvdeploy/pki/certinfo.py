"""Read what matters in a certificate (subject, SANs, EKU, validity) and judge its expiry. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tvdeploy.errors import VerificationError

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class CertInfo:
    subject_cn: str
    issuer_cn: str
    serial: str
    not_before: datetime
    not_after: datetime
    sha256: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    eku: tuple[str, ...]
    public_key_sha256: str

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def needs_renewal(self, now: datetime) -> bool:
        """Renew when less than a third of the lifetime is left (or it is already invalid)."""
        lifetime = self.not_after - self.not_before
        return now >= self.not_after - lifetime / 3 or now < self.not_before

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "subject": self.subject_cn,
            "issuer": self.issuer_cn,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left(now), 1),
            "sha256": self.sha256,
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "eku": list(self.eku),
        }


def _cn(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def public_key_fingerprint(public_key: object) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER: compares a key with a certificate."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def cert_info(cert: x509.Certificate) -> CertInfo:
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(_x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(_x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(_x509.IPAddress))
    except _x509.ExtensionNotFound:
        pass
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
    eku: tuple[str, ...] = ()
    try:
        ext = cert.extensions.get_extension_for_class(_x509.ExtendedKeyUsage).value
        eku = tuple(names.get(oid, oid.dotted_string) for oid in ext)
    except _x509.ExtensionNotFound:
        pass
    return CertInfo(
        subject_cn=_cn(cert.subject),
        issuer_cn=_cn(cert.issuer),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        dns_names=dns,
        ip_addresses=ips,
        eku=eku,
        public_key_sha256=public_key_fingerprint(cert.public_key()),
    )


def load_cert_pem(data: bytes, where: str) -> x509.Certificate:
    """Parse one PEM certificate; *where* names the file or node in the error."""
    from cryptography import x509 as _x509

    try:
        return _x509.load_pem_x509_certificate(data)
    except ValueError:
        raise VerificationError(f"{where}: not a valid PEM certificate") from None


def parse_cert(pem: bytes | str | None) -> x509.Certificate | None:
    """One PEM certificate, or None when there is none or it does not parse (callers say which)."""
    from cryptography import x509 as _x509

    if not pem:
        return None
    try:
        return _x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return None


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint, lowercase hex (what audit records name)."""
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when *ca_cert*'s key signed *cert* (not just a matching issuer name)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    return True


def utcnow() -> datetime:
    return datetime.now(UTC)


BACKDATE = timedelta(minutes=5)  # tolerate small clock offsets between operator and nodes
