"""Each way of reaching the wrong vCenter, or the right one wrongly, is one distinct error line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.vcsim_site import SimSite, sim_site

pytestmark = pytest.mark.lab


@pytest.fixture
def sim(tmp_path: Path):
    yield from sim_site(tmp_path)


def _one_error(r) -> str:
    assert r.code == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _fmt(hex_digest: str) -> str:
    return ":".join(hex_digest.upper()[i : i + 2] for i in range(0, 64, 2))


def test_wrong_fingerprint_names_both(cli, sim: SimSite) -> None:
    sim.doc["vcenter"]["fingerprint"] = "ab" * 32
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert "vcenter.fingerprint" in line
    assert f"expected {_fmt('ab' * 32)}" in line
    assert f"presented {_fmt(sim.info.fingerprint)}" in line


def test_wrong_password(cli, sim: SimSite, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    sim.doc["vcenter"]["password"] = f"file:{wrong}"
    sim.write()
    line = _one_error(cli("vm", "list", sim.path))
    assert "vcenter.user" in line and "refused the login" in line and "(vcenter.password)" in line
    assert "not-the-password" not in line


def test_missing_password_file(cli, sim: SimSite, tmp_path: Path) -> None:
    sim.doc["vcenter"]["password"] = f"file:{tmp_path / 'nope'}"
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert line.startswith("error: vcenter.password: secret file not found")


def test_unreachable(cli, sim: SimSite) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    sim.doc["vcenter"]["port"] = free
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert f"vcenter.host: cannot reach vCenter at 127.0.0.1:{free}" in line


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("datacenter", "no-such-dc", "datacenter 'no-such-dc' not found"),
        ("cluster", "no-such-cluster", "cluster 'no-such-cluster' not found in datacenter 'tv-dc'"),
        ("datastore", "no-such-ds", "datastore 'no-such-ds' not found in datacenter 'tv-dc'"),
        ("folder", "trueverit/missing", "VM folder 'trueverit/missing' not found in datacenter 'tv-dc'"),
        ("template", "no-such-template", "template 'no-such-template' not found in datacenter 'tv-dc'"),
        ("network", "no-such-net", "network 'no-such-net' not found in datacenter 'tv-dc'"),
    ],
)
def test_each_missing_object_names_its_key(cli, sim: SimSite, key: str, value: str, what: str) -> None:
    sim.doc["vcenter"][key] = value
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert line.startswith(f"error: vcenter.{key}: {what}"), line


def test_ca_file_verifies_and_a_wrong_ca_is_refused(cli, sim: SimSite, tmp_path: Path) -> None:
    del sim.doc["vcenter"]["fingerprint"]
    # The lab certificate is self-signed: as its own CA it verifies (name 127.0.0.1 in its SAN).
    sim.doc["vcenter"]["ca_file"] = str(sim.lab_dir / "vcenter" / "cert.pem")
    sim.write()
    r = cli("vm", "plan", sim.path, "--detailed-exitcode")
    assert r.code == 2, r.stderr
    other = tmp_path / "other-ca.pem"
    other.write_text(_other_cert())
    sim.doc["vcenter"]["ca_file"] = str(other)
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert f"vcenter.ca_file: the certificate of 127.0.0.1:{sim.info.port} does not verify against {other}" in line


def test_site_without_vcenter_is_refused(cli, sim: SimSite) -> None:
    del sim.doc["vcenter"]
    sim.write()
    line = _one_error(cli("vm", "plan", sim.path))
    assert "no vcenter section" in line


def _other_cert() -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()
