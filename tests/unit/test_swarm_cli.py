"""`tvdeploy swarm ...` without a lab: bad input, missing state, tampered escrow, unreachable nodes.

Each failure is one `error:` line naming the file or node, exit 1, no traceback, nothing written.
Unreachable nodes are loopback addresses with nothing listening on the SSH port (no fake server).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tvdeploy.config.secrets import Secret


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "site.yaml"
    path.write_text(f"""
version: 1
site: {{name: unit}}
network: {{subnet: 127.0.0.0/24}}
nodes:
  - {{name: m1, role: manager, address: 127.0.0.2, zone: core}}
  - {{name: w1, role: worker, address: 127.0.0.3, zone: edge}}
ssh: {{user: root, port: {_closed_port()}, known_hosts: known_hosts}}
swarm: {{encrypted_networks: false, publish_mode: host}}
state_dir: state
""")
    return path


def _one_error(r, *fragments: str) -> str:
    assert r.code == 1, (r.stdout, r.stderr)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    tail = r.stderr.split(errors[0], 1)[1].strip().splitlines()
    assert tail == [] or (len(tail) == 1 and tail[0].endswith("more errors; -v shows all)")), tail
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def _model(site_file: Path):
    from tvdeploy.config.load import load_site

    return load_site(site_file)


def test_missing_site_file(cli, tmp_path: Path) -> None:
    for verb in ("plan", "bootstrap", "status", "unlock", "unlock-key"):
        _one_error(cli("swarm", verb, tmp_path / "nope.yaml"), str(tmp_path / "nope.yaml"))


def test_status_and_unlock_without_client_certificate(cli, site_file: Path, operator_key: str) -> None:
    for verb in ("status", "unlock"):
        line = _one_error(cli("swarm", verb, site_file), "no operator client certificate")
        assert str(site_file.parent / "state") in line


def test_unlock_key_without_escrow(cli, site_file: Path) -> None:
    path = site_file.parent / "state" / "swarm" / "unlock-key.escrow"
    _one_error(cli("swarm", "unlock-key", site_file), str(path), "no escrowed unlock key")
    _one_error(cli("swarm", "unlock-key", site_file, "--show"), str(path))


def test_unlock_key_shows_where_and_to_whom_and_the_key_only_with_show(
    cli, site_file: Path, operator_key: str, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.audit.recorder import site_log_path
    from tvdeploy.execute.unlock_escrow import escrow_path, store_unlock_key
    from tvdeploy.keys.escrow import open_sealed
    from tvdeploy.keys.store import key_id, public_pem

    officer = Ed25519PrivateKey.generate()
    (tmp_path / "officer.pub").write_bytes(public_pem(officer.public_key()))
    text = site_file.read_text().replace("swarm: {", "swarm: {escrow_recipients: [officer.pub], ")
    site_file.write_text(text)
    model = _model(site_file)
    secret = "SWMKEY-1-unit-test-secret"
    ids = store_unlock_key(model, Secret(secret))
    assert key_id(officer.public_key()) in ids and len(ids) == 2
    assert oct(escrow_path(model).stat().st_mode & 0o777) == "0o600"
    assert open_sealed(escrow_path(model).read_bytes(), officer) == secret.encode()  # the second holder

    r = cli("swarm", "unlock-key", site_file)
    assert r.code == 0 and secret not in r.stdout + r.stderr
    assert str(escrow_path(model)) in r.stdout and key_id(officer.public_key()) in r.stdout
    r = cli("swarm", "unlock-key", site_file, "--json")
    assert json.loads(r.stdout) == {"site": "unit", "path": str(escrow_path(model)), "recipients": ids}
    r = cli("swarm", "unlock-key", site_file, "--show")
    assert r.code == 0 and r.stdout.strip() == secret
    records = site_log_path(model).read_text().splitlines()
    assert json.loads(records[-1])["event"] == "swarm.unlock-key.show" and secret not in records[-1]


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"", "not valid JSON"),
        (b'{"format": "something-else", "recipients": []}', "not a tvdeploy-escrow/v1 document"),
        (b"\x00\xff" * 10, "not valid JSON"),
    ],
)
def test_damaged_escrow_is_refused_naming_the_file(
    cli, site_file: Path, operator_key: str, blob: bytes, why: str
) -> None:
    from tvdeploy.execute.unlock_escrow import escrow_path

    path = escrow_path(_model(site_file))
    path.parent.mkdir(parents=True)
    path.write_bytes(blob)
    _one_error(cli("swarm", "unlock-key", site_file), str(path), why)
    _one_error(cli("swarm", "unlock-key", site_file, "--show"), str(path), why)


def test_tampered_escrow_does_not_open(cli, site_file: Path, operator_key: str) -> None:
    from tvdeploy.execute.unlock_escrow import escrow_path, store_unlock_key

    model = _model(site_file)
    store_unlock_key(model, Secret("SWMKEY-1-tamper"))
    doc = json.loads(escrow_path(model).read_bytes())
    body = doc["ciphertext"] if "ciphertext" in doc else None
    assert body is not None, sorted(doc)
    doc["ciphertext"] = ("A" if body[0] != "A" else "B") + body[1:]
    escrow_path(model).write_text(json.dumps(doc))
    line = _one_error(cli("swarm", "unlock-key", site_file, "--show"), str(escrow_path(model)))
    assert "SWMKEY" not in line


def test_escrow_sealed_to_another_operator_does_not_open(
    cli, site_file: Path, operator_key: str, isolated_home: Path
) -> None:
    from tvdeploy.execute.unlock_escrow import escrow_path, store_unlock_key
    from tvdeploy.keys.store import generate_key, operator_key_name

    model = _model(site_file)
    store_unlock_key(model, Secret("SWMKEY-1-other"))
    for f in (isolated_home / "keys").iterdir():
        f.unlink()
    generate_key(operator_key_name(), passphrase=None)
    _one_error(cli("swarm", "unlock-key", site_file, "--show"), str(escrow_path(model)), "not sealed to key")


def test_bootstrap_refuses_unreachable_nodes_and_writes_nothing(cli, site_file: Path, operator_key: str) -> None:
    r = cli("swarm", "bootstrap", site_file, "--yes")
    line = _one_error(r, "pre-flight: node m1 (127.0.0.2:")
    assert "(1 more errors; -v shows all)" in r.stderr
    assert "w1" not in line
    assert not (site_file.parent / "state").exists()  # no CA, no audit record, no escrow


def test_bootstrap_needs_the_audit_key_before_touching_anything(cli, site_file: Path) -> None:
    _one_error(cli("swarm", "bootstrap", site_file, "--yes"))
    assert not (site_file.parent / "state").exists()


def test_plan_of_unreachable_site_reports_findings(cli, site_file: Path) -> None:
    r = cli("swarm", "plan", site_file, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    reach = [f for f in doc["findings"] if f["check"] == "reachable"]
    assert [(f["node"], f["severity"]) for f in reach] == [("m1", "error"), ("w1", "error")]
    assert doc["tls"] is None and "unreachable over the TLS API: m1, w1" in doc["problems"][0]
    r = cli("swarm", "plan", site_file)
    assert r.code == 0 and "tls: not planned" in r.stdout
    assert cli("swarm", "plan", site_file, "--detailed-exitcode").code == 2
