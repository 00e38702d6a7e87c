"""The TLS planner, data-driven: (site, host facts, local PKI) -> steps per node."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.unit.tls_helpers import make_site, node_csr
from tvdeploy.errors import RefusedError
from tvdeploy.facts import host as H
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import public_key_fingerprint, utcnow
from tvdeploy.pki.issue import issue_client_cert, server_names, sign_server_csr
from tvdeploy.pki.local import read_local_pki
from tvdeploy.plan import tls as P
from tvdeploy.plan.daemon_config import render_daemon_json, render_systemd_dropin

NOW = utcnow()


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CA_PASSPHRASE", "pw")
    return make_site(tmp_path)


@pytest.fixture
def ca(site):
    ca, _ = ca_mod.load_or_create_ca(site, NOW)
    issue_client_cert(ca, site.site.name, 30, NOW)
    return ca


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def configured(site, ca, name: str, init: str = "sysvinit", days: int = 365, signer=None,
               now=NOW) -> H.HostFacts:
    """Facts of a node that `tls apply` has configured."""
    node = site.node(name)
    csr, key = node_csr(name)
    cert = sign_server_csr(signer or ca, csr, name, site.site.name, server_names(site, node), days, now)
    daemon = render_daemon_json(str(node.address))
    return H.HostFacts(
        node=name, os=H.OSInfo("debian", "12", "Debian 12"), init=init, hostname=name,
        addresses=(str(node.address),),
        docker=H.DockerInstall(True, "20.10.24", "/usr/sbin/dockerd"),
        swarm=H.SwarmState(True, "inactive", "", False, ""),
        daemon_config=H.parse_daemon_json(daemon),
        dropin=render_systemd_dropin("/usr/sbin/dockerd").strip("\n") if init == "systemd" else None,
        ca_pem=ca.cert_pem.decode(), server_cert_pem=pem(cert),
        server_key=H.KeyFile("400", "root", public_key_fingerprint(key.public_key())),
        disk=H.DiskFree("/", 100, 50),
        kernel=H.KernelFeatures("6.1", H.Feature("yes", ""), H.Feature("yes", "")),
    )


UNCONFIGURED = (Path(__file__).parent / "data/host_facts/sysvinit-lab-unconfigured.txt").read_text()


def unconfigured(site, name: str) -> H.HostFacts:
    """Facts recorded on a fresh lab node."""
    return dataclasses.replace(H.parse_probe(name, UNCONFIGURED), hostname=name)


def replace(f: H.HostFacts, **kw) -> H.HostFacts:
    return dataclasses.replace(f, **kw)


def actions(plan: P.TlsPlan, node: str) -> list[str]:
    return [s.action for n in plan.nodes if n.node == node for s in n.steps]


def test_converged_site_plans_nothing(site, ca):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    plan = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW)
    assert not plan.changes and plan.steps == []
    assert plan.to_json()["changes"] is False


def test_fresh_site_creates_ca_client_and_configures_every_node(site):
    facts = {n.name: unconfigured(site, n.name) for n in site.nodes}
    plan = P.plan_tls(site, facts, read_local_pki(ca_mod.pki_paths(site)), NOW)
    assert [s.action for s in plan.global_steps] == [P.CREATE_CA, P.ISSUE_CLIENT]
    for n in site.nodes:
        assert actions(plan, n.name) == [P.ISSUE_SERVER, P.INSTALL_CA, P.WRITE_CONFIG, P.RESTART]
    assert all(not n.live for n in plan.nodes)


# (case name, how to change the converged facts of tv-mgr-1, expected steps of tv-mgr-1)
CASES = [
    ("no-cert", lambda s, ca, f: replace(f, server_cert_pem=None), [P.ISSUE_SERVER, P.RESTART]),
    ("garbled-cert", lambda s, ca, f: replace(f, server_cert_pem="-----BEGIN CERTIFICATE-----\nxx"),
     [P.ISSUE_SERVER, P.RESTART]),
    ("key-missing", lambda s, ca, f: replace(f, server_key=None), [P.ISSUE_SERVER, P.RESTART]),
    ("key-mismatch", lambda s, ca, f: replace(f, server_key=H.KeyFile("400", "root", "00" * 32)),
     [P.ISSUE_SERVER, P.RESTART]),
    ("expiring", lambda s, ca, f: configured(s, ca, "tv-mgr-1", days=365, now=NOW - timedelta(days=300)),
     [P.ISSUE_SERVER, P.RESTART]),
    ("foreign-ca-cert", "foreign", [P.ISSUE_SERVER, P.RESTART]),
    ("ca-not-installed", lambda s, ca, f: replace(f, ca_pem=None), [P.INSTALL_CA, P.RESTART]),
    ("config-missing", lambda s, ca, f: replace(f, daemon_config=H.parse_daemon_json(None)),
     [P.WRITE_CONFIG, P.RESTART]),
    ("config-icc-on", lambda s, ca, f: replace(f, daemon_config=H.parse_daemon_json(
        f.daemon_config.raw.replace('"icc": false', '"icc": true'))), [P.WRITE_CONFIG, P.RESTART]),
    ("config-reordered-only", lambda s, ca, f: replace(f, daemon_config=H.parse_daemon_json(
        json.dumps(dict(reversed(list(f.daemon_config.data.items())))))), []),
    ("key-loose-mode", lambda s, ca, f: replace(f, server_key=dataclasses.replace(f.server_key, mode="644")),
     [P.FIX_KEY_MODE]),
    ("config-written-restart-cut-off", lambda s, ca, f: replace(f, changed_since_start=(H.DAEMON_JSON,)),
     [P.RESTART]),
    ("daemon-stopped", lambda s, ca, f: replace(f, swarm=H.SwarmState(False, "unknown", "", False, "down")),
     [P.RESTART]),
    ("systemd-no-dropin", lambda s, ca, f: replace(configured(s, ca, "tv-mgr-1", init="systemd"), dropin=None),
     [P.WRITE_DROPIN, P.RESTART]),
    ("systemd-converged", lambda s, ca, f: configured(s, ca, "tv-mgr-1", init="systemd"), []),
]


@pytest.mark.parametrize("name, change, expect", CASES, ids=[c[0] for c in CASES])
def test_one_node_drift(site, ca, tmp_path, name, change, expect):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    if change == "foreign":
        other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", None, NOW)
        facts["tv-mgr-1"] = configured(site, ca, "tv-mgr-1", signer=other)
    else:
        facts["tv-mgr-1"] = change(site, ca, facts["tv-mgr-1"])
    plan = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW)
    assert actions(plan, "tv-mgr-1") == expect
    assert actions(plan, "tv-wrk-1") == []
    assert plan.global_steps == ()


def test_changed_address_reissues(site, ca, tmp_path):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    moved = make_site(tmp_path, nodes=[
        {"name": "tv-mgr-1", "role": "manager", "address": "10.30.0.99", "zone": "core"},
        {"name": "tv-wrk-1", "role": "worker", "address": "10.30.0.21", "zone": "edge"},
    ])
    plan = P.plan_tls(moved, facts, read_local_pki(ca.paths), NOW)
    (issue,) = [s for s in plan.steps if s.action == P.ISSUE_SERVER]
    assert issue.node == "tv-mgr-1" and "10.30.0.99" in issue.reason
    assert P.WRITE_CONFIG in actions(plan, "tv-mgr-1")


def test_rotation_reissues_everything_and_serializes_live_nodes(site, ca):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    plan = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW, rotate=True)
    assert [s.action for s in plan.global_steps] == [P.ISSUE_CLIENT]
    for n in plan.nodes:
        assert [s.action for s in n.steps] == [P.ISSUE_SERVER, P.RESTART]
        assert n.live  # serving its API: restarted one at a time


def test_swarm_member_is_live_even_without_tls(site, ca):
    facts = {n.name: unconfigured(site, n.name) for n in site.nodes}
    facts["tv-wrk-1"] = replace(facts["tv-wrk-1"], swarm=H.SwarmState(True, "active", "x", False, ""))
    plan = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW)
    assert {n.node: n.live for n in plan.nodes} == {"tv-mgr-1": False, "tv-wrk-1": True}


@pytest.mark.parametrize("change, reason", [
    (lambda p: p.client_cert_pem and dataclasses.replace(p, client_cert_pem=None), "no client certificate"),
    (lambda p: dataclasses.replace(p, client_key_public_sha256="ab"), "does not match"),
    (lambda p: dataclasses.replace(p, client_ca_pem=b"other"), "ca.pem"),
])
def test_client_certificate_drift(site, ca, change, reason):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    plan = P.plan_tls(site, facts, change(read_local_pki(ca.paths)), NOW)
    (step,) = plan.global_steps
    assert step.action == P.ISSUE_CLIENT and reason in step.reason


def test_expiring_client_certificate(site, ca):
    issue_client_cert(ca, site.site.name, 30, NOW - timedelta(days=25))
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    (step,) = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW).global_steps
    assert "expires in 5 days" in step.reason


def test_missing_docker_and_broken_daemon_json_are_refused_naming_nodes(site, ca):
    facts = {n.name: configured(site, ca, n.name) for n in site.nodes}
    facts["tv-mgr-1"] = replace(facts["tv-mgr-1"], docker=H.DockerInstall(False, None, None))
    facts["tv-wrk-1"] = replace(facts["tv-wrk-1"], daemon_config=H.parse_daemon_json("{"))
    with pytest.raises(RefusedError) as err:
        P.plan_tls(site, facts, read_local_pki(ca.paths), NOW)
    assert err.value.message.startswith("node tv-mgr-1: Docker is not installed")
    assert err.value.details[0].startswith("node tv-wrk-1: /etc/docker/daemon.json is not valid JSON")


def test_plan_json_never_contains_secrets(site, ca):
    facts = {n.name: unconfigured(site, n.name) for n in site.nodes}
    doc = P.plan_tls(site, facts, read_local_pki(ca.paths), NOW).to_json()
    text = json.dumps(doc)
    assert "PRIVATE KEY" not in text and "pw" not in text.split('"')
