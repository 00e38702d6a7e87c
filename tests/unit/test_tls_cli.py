"""The tls and docker-env commands on bad input, without a lab: one `error:` line, exit 1, no
traceback, nothing written."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from tests.unit.tls_helpers import SITE_DOC
from tvdeploy.config.secrets import Secret
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import utcnow
from tvdeploy.pki.issue import issue_client_cert


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site_file(tmp_path):
    doc = json.loads(json.dumps(SITE_DOC))
    doc["network"] = {"subnet": "127.0.0.0/24"}
    doc["nodes"] = [
        {"name": "n1", "role": "manager", "address": "127.0.0.1", "zone": "z"},
        {"name": "n2", "role": "worker", "address": "127.0.0.2", "zone": "z"},
    ]
    doc["ssh"] = {"user": "root", "port": _closed_port(), "known_hosts": "known_hosts"}
    doc["state_dir"] = "state"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _one_error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_missing_site_file(cli, tmp_path):
    r = cli("tls", "plan", tmp_path / "nope.yaml")
    assert r.code == 1 and str(tmp_path / "nope.yaml") in _one_error(r)


def test_unreachable_nodes_are_one_line_plus_count(cli, site_file, tmp_path):
    r = cli("tls", "plan", site_file, "--detailed-exitcode")
    assert r.code == 1
    err = _one_error(r)
    assert err.startswith("error: node n1 (127.0.0.1:") and "cannot connect" in err
    assert "(1 more errors; -v shows all)" in r.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "known_hosts").exists()


def test_apply_without_operator_key_touches_nothing(cli, site_file, tmp_path):
    r = cli("tls", "apply", site_file, "--yes")
    assert r.code == 1 and "no operator key" in _one_error(r)
    assert not (tmp_path / "state").exists()


def test_status_lists_unreachable_nodes_and_exits_1(cli, site_file):
    r = cli("tls", "status", site_file, "--json")
    assert r.code == 1
    doc = json.loads(r.stdout)
    rows = {c["name"]: c for c in doc["certificates"]}
    assert rows["site CA"]["state"] == "missing"
    assert rows["n1"]["state"].startswith("error: node n1")
    assert _one_error(r).startswith("error: node n1")


@pytest.fixture
def client_dir(site_file, tmp_path):
    ca = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "state" / "pki"), "plant-t", Secret("pw"), utcnow())
    issue_client_cert(ca, "plant-t", 30, utcnow())
    return ca.paths.client_dir


def test_docker_env_prints_exports(cli, site_file, client_dir):
    r = cli("docker-env", site_file, "n2")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "export DOCKER_HOST=tcp://127.0.0.2:2376",
        "export DOCKER_TLS_VERIFY=1",
        f"export DOCKER_CERT_PATH={client_dir}",
    ]
    j = cli("docker-env", site_file, "n2", "--json")
    assert json.loads(j.stdout) == {"DOCKER_HOST": "tcp://127.0.0.2:2376", "DOCKER_TLS_VERIFY": "1",
                                    "DOCKER_CERT_PATH": str(client_dir)}


def test_docker_env_unknown_node(cli, site_file, client_dir):
    r = cli("docker-env", site_file, "n9")
    assert r.code == 1 and "no node named 'n9' (nodes: n1, n2)" in _one_error(r)


def test_docker_env_before_tls_apply(cli, site_file, tmp_path):
    r = cli("docker-env", site_file, "n1")
    assert r.code == 1
    assert "ca.pem: not found; run tvdeploy tls apply first" in _one_error(r)


def test_docker_env_usage_error(cli, site_file):
    assert cli("docker-env", site_file).code == 64


def test_malformed_known_hosts(cli, site_file, tmp_path):
    (tmp_path / "known_hosts").write_bytes(b"127.0.0.1 ssh-ed25519 !!!notbase64\n")
    r = cli("tls", "plan", site_file)
    assert r.code == 1 and "ssh.known_hosts is malformed" in _one_error(r)
    (tmp_path / "known_hosts").write_bytes(b"\xff\xfe\x00binary")
    r = cli("tls", "plan", site_file)
    assert r.code == 1 and "cannot read ssh.known_hosts" in _one_error(r)
