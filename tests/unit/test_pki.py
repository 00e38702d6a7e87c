"""Site PKI: CA creation (encrypted key), CSR signing (SANs, EKU, validity), client certificate,
hostile CSRs and a wrong CA passphrase."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.tls_helpers import make_site, node_csr
from tvdeploy.config.secrets import Secret
from tvdeploy.errors import InputFileError, SecretError, VerificationError
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import cert_info, signed_by, utcnow
from tvdeploy.pki.issue import issue_client_cert, server_names, sign_server_csr

PASS = "correct horse battery staple"


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CA_PASSPHRASE", PASS)
    return make_site(tmp_path)


@pytest.fixture
def ca(site):
    return ca_mod.load_or_create_ca(site, utcnow())[0]


@pytest.mark.parametrize("key_type, key_cls", [("ec-p256", ec.EllipticCurvePrivateKey),
                                                ("rsa-3072", rsa.RSAPrivateKey)])
def test_ca_key_is_encrypted_0600_and_reloads(tmp_path, key_type, key_cls):
    paths = ca_mod.CAPaths(tmp_path / "pki")
    made = ca_mod.create_ca(paths, "plant-t", Secret(PASS), utcnow(), key_type=key_type)
    pem = paths.key.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PASS.encode() not in pem
    assert stat.S_IMODE(os.stat(paths.key).st_mode) == 0o600
    loaded = ca_mod.load_ca(paths, Secret(PASS))
    assert isinstance(loaded.key, key_cls)
    assert loaded.cert == made.cert
    bc = loaded.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    if key_type == "rsa-3072":
        assert loaded.key.key_size == 3072


def test_load_or_create_is_idempotent(site):
    first, created = ca_mod.load_or_create_ca(site, utcnow())
    again, created_again = ca_mod.load_or_create_ca(site, utcnow())
    assert created and not created_again
    assert first.cert == again.cert


def test_wrong_passphrase_is_one_line_without_the_secret(site, ca, monkeypatch):
    monkeypatch.setenv("TEST_CA_PASSPHRASE", "not the passphrase")
    with pytest.raises(SecretError) as err:
        ca_mod.load_or_create_ca(site, utcnow())
    msg = err.value.message
    assert "\n" not in msg and str(ca.paths.key) in msg and "wrong pki.ca_passphrase" in msg
    assert "not the passphrase" not in msg and PASS not in msg


def test_unset_passphrase_variable_names_the_key_path(site, ca, monkeypatch):
    monkeypatch.delenv("TEST_CA_PASSPHRASE")
    with pytest.raises(SecretError, match=r"pki.ca_passphrase: environment variable TEST_CA_PASSPHRASE"):
        ca_mod.load_or_create_ca(site, utcnow())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_ca_files_are_refused(site, ca, damage):
    target = ca.paths.cert if damage != "truncate" else ca.paths.key
    data = target.read_bytes()
    target.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\xffnot pem", "empty": b""}[damage])
    with pytest.raises((VerificationError, SecretError)) as err:
        ca_mod.load_or_create_ca(site, utcnow())
    assert str(target) in err.value.message


def test_ca_key_of_another_ca_is_refused(site, ca, tmp_path):
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", Secret(PASS), utcnow())
    ca.paths.key.write_bytes(other.paths.key.read_bytes())
    with pytest.raises(VerificationError, match="does not belong"):
        ca_mod.load_or_create_ca(site, utcnow())


def test_half_a_ca_is_not_silently_replaced(site, ca):
    ca.paths.key.unlink()
    with pytest.raises(InputFileError, match="missing while the other half"):
        ca_mod.load_or_create_ca(site, utcnow())


def test_server_cert_has_site_names_eku_and_validity(site, ca):
    node = site.node("tv-mgr-1")
    csr, key = node_csr("something-else")  # the CSR's own subject is ignored
    now = utcnow()
    cert = sign_server_csr(ca, csr, node.name, site.site.name, server_names(site, node),
                           site.pki.server_cert_days, now)
    info = cert_info(cert)
    assert info.subject_cn == "tv-mgr-1"
    assert set(info.dns_names) == {"tv-mgr-1", "tv-mgr-1.plant-t.example"}
    assert info.ip_addresses == ("10.30.0.11",)
    assert info.eku == ("serverAuth",)
    assert timedelta(days=364) < info.not_after - now <= timedelta(days=365)
    assert info.not_before <= now
    assert signed_by(cert, ca.cert)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False


def test_client_cert_is_client_auth_short_lived_key_0600(site, ca):
    now = utcnow()
    cert = issue_client_cert(ca, site.site.name, site.pki.client_cert_days, now)
    info = cert_info(cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert timedelta(days=29) < info.not_after - now <= timedelta(days=30)
    d = ca.paths.client_dir
    assert stat.S_IMODE(os.stat(d / "key.pem").st_mode) == 0o600
    assert (d / "ca.pem").read_bytes() == ca.cert_pem
    key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def _tampered_csr() -> bytes:
    csr_pem, _ = node_csr()
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    # Flip a byte inside the subject: the structure still parses, the signature no longer matches.
    i = der.find(b"tv-mgr-1")
    bad = der[:i] + b"X" + der[i + 1:]
    import base64

    body = base64.encodebytes(bad).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n".encode()


def _weak_rsa_csr() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return node_csr(key=key)[0]


def _odd_curve_csr() -> bytes:
    return node_csr(key=ec.generate_private_key(ec.SECP256K1()))[0]


@pytest.mark.parametrize("name, csr, message", [
    ("garbage", lambda: b"hello", "not a valid PEM certificate signing request"),
    ("truncated", lambda: node_csr()[0][:200], "not a valid PEM certificate signing request"),
    ("tampered", _tampered_csr, "signature does not verify"),
    ("weak-rsa", _weak_rsa_csr, "1024-bit RSA key"),
    ("odd-curve", _odd_curve_csr, "curve secp256k1"),
    ("huge", lambda: b"A" * 20000, "too large"),
])
def test_bad_csr_is_refused_naming_the_node(site, ca, name, csr, message):
    node = site.node("tv-wrk-1")
    with pytest.raises(VerificationError) as err:
        sign_server_csr(ca, csr(), node.name, site.site.name, server_names(site, node), 30, utcnow())
    assert err.value.message.startswith("node tv-wrk-1: ")
    assert message in err.value.message


def test_certificate_of_another_ca_is_not_signed_by_site_ca(site, ca, tmp_path):
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", None, utcnow())
    node = site.node("tv-mgr-1")
    cert = sign_server_csr(other, node_csr()[0], node.name, "x", server_names(site, node), 30, utcnow())
    assert not signed_by(cert, ca.cert)
    assert signed_by(cert, other.cert)
    assert cert.fingerprint(hashes.SHA256())  # well-formed
