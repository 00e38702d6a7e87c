"""Issue 5 on the lab: SSH with pinned host keys, site PKI, Docker API over mutual TLS.

Uses the `lab` and `lab_reset` fixtures (tests/integration/conftest.py): real nodes with sshd and
dockerd in namespaces. Every test is independent: it applies (or resets) what it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tvdeploy.config.load import load_site
from tvdeploy.connectors import docker_api
from tvdeploy.connectors.ssh import SSHPool
from tvdeploy.errors import ConnectionFailed
from tvdeploy.facts.host import gather
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import cert_info, load_cert_pem, public_key_fingerprint, utcnow
from tvdeploy.pki.issue import issue_client_cert

pytestmark = pytest.mark.lab


def _site(lab):
    return load_site(lab.site_file)


def _client(site) -> docker_api.ClientCert:
    return docker_api.ClientCert.in_dir(ca_mod.pki_paths(site).client_dir)


def _dockerd_pids(site) -> dict[str, str]:
    with SSHPool(site) as pool:
        return {n.name: pool.get(n.name).run("cat /var/run/docker.pid").stdout.strip() for n in site.nodes}


def _apply(cli, lab, *extra):
    r = cli("tls", "apply", lab.site_file, "--yes", *extra)
    assert r.code == 0, r.stderr
    return r


@pytest.fixture
def configured(lab, cli, operator_key):
    _apply(cli, lab)
    return lab


def test_apply_from_unconfigured_nodes_then_nothing_to_do(lab_reset, cli, operator_key, tmp_path):
    lab = lab_reset
    site = _site(lab)
    r = cli("tls", "plan", lab.site_file, "--detailed-exitcode")
    assert r.code == 2, r.stderr
    _apply(cli, lab)

    certs = _client(site)
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "other", None, utcnow())
    issue_client_cert(other, "other", 1, utcnow())
    foreign = tmp_path / "foreign"  # the other CA's client certificate, the site CA to verify the node
    foreign.mkdir()
    shutil.copy(certs.ca, foreign / "ca.pem")
    shutil.copy(other.paths.client_dir / "cert.pem", foreign / "cert.pem")
    shutil.copy(other.paths.client_dir / "key.pem", foreign / "key.pem")
    for node in site.nodes:
        addr = str(node.address)
        assert docker_api.ping(node.name, addr, certs)["ApiVersion"]
        with pytest.raises(ConnectionFailed, match=f"node {node.name}"):
            docker_api.ping(node.name, addr, certs, with_client_cert=False, timeout=5)
        with pytest.raises(ConnectionFailed, match=f"node {node.name}"):
            docker_api.ping(node.name, addr, docker_api.ClientCert.in_dir(foreign), timeout=5)
    with SSHPool(site) as pool:  # bound to the site address only: nothing answers on the node's loopback
        for node in site.nodes:
            r = pool.get(node.name).run(
                "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 2376), 2)\"", check=False)
            assert r.code != 0 and "Connection refused" in r.stderr
    pids = _dockerd_pids(site)
    r = cli("tls", "plan", lab.site_file, "--detailed-exitcode")
    assert r.code == 0, r.stdout + r.stderr
    r = cli("tls", "plan", lab.site_file, "--json")
    assert r.code == 0 and json.loads(r.stdout)["changes"] is False
    r = cli("tls", "apply", lab.site_file, "--yes", "--json")
    assert r.code == 0 and json.loads(r.stdout)["applied"] == []
    assert _dockerd_pids(site) == pids  # the second apply restarted nothing

    from tvdeploy.audit.recorder import site_log_path

    log_text = site_log_path(site).read_text()
    for node in site.nodes:
        assert f'"name":"{node.name}"' in log_text
    assert '"event":"tls.apply"' in log_text


def test_config_written_but_restart_cut_off_is_restarted_by_the_next_apply(configured, cli):
    """A run SIGKILLed between writing daemon.json and restarting dockerd leaves the right file
    on disk and the old daemon running: the plan must see the daemon is older than its file."""
    site = _site(configured)
    node = site.nodes[1].name
    pids = _dockerd_pids(site)
    time.sleep(3)  # the daemon is now clearly older than a file written next
    with SSHPool(site) as pool:
        pool.get(node).run("touch /etc/docker/daemon.json")
    r = cli("tls", "plan", configured.site_file, "--json")
    plan = json.loads(r.stdout)
    assert plan["nodes"][node] == ["restart-docker"], plan
    assert all(not v for k, v in plan["nodes"].items() if k != node), plan
    (step,) = plan["steps"]
    assert "started before /etc/docker/daemon.json changed" in step["reason"], step
    _apply(cli, configured)
    after = _dockerd_pids(site)
    assert after[node] != pids[node] and {k: v for k, v in after.items() if k != node} == \
        {k: v for k, v in pids.items() if k != node}
    assert cli("tls", "plan", configured.site_file, "--detailed-exitcode").code == 0


def test_node_files_keys_0400_certs_0444_root(configured):
    site = _site(configured)
    with SSHPool(site) as pool:
        for node in site.nodes:
            out = pool.get(node.name).run("stat -c '%n %a %U' /etc/docker/tls/*.pem").stdout
            modes = dict(line.split(" ", 1) for line in out.splitlines())
            assert modes == {"/etc/docker/tls/ca.pem": "444 root",
                             "/etc/docker/tls/server-cert.pem": "444 root",
                             "/etc/docker/tls/server-key.pem": "400 root"}


def _private_keys_under(root: Path, skip: Path | None) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        if skip is not None and Path(dirpath).is_relative_to(skip):
            continue
        for f in files:
            p = Path(dirpath) / f
            try:
                if p.is_file() and p.stat().st_size < 256 * 1024 and b"PRIVATE KEY" in p.read_bytes():
                    found.append(p)
            except OSError:
                continue
    return found


def test_no_node_private_key_on_the_operator_machine(configured, isolated_home):
    from cryptography.hazmat.primitives import serialization

    site = _site(configured)
    with SSHPool(site) as pool:
        node_keys = {gather(n.name, pool.get(n.name)).server_key.public_key_sha256 for n in site.nodes}
    assert None not in node_keys and len(node_keys) == len(site.nodes)
    candidates = _private_keys_under(isolated_home, None)
    candidates += _private_keys_under(configured.dir, skip=configured.dir / "nodes")
    assert candidates  # the search does look: the operator's own keys are found
    for p in candidates:
        assert "server-key" not in p.name, p
        try:
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except (TypeError, ValueError):
            continue  # encrypted (the CA key) or not a PEM key
        assert public_key_fingerprint(key.public_key()) not in node_keys, f"node key found at {p}"


def _api_watch(site, stop: threading.Event, worst: list[int]) -> None:
    """Sample every node's API port; record the most nodes down at the same moment."""
    while not stop.is_set():
        down = 0
        for n in site.nodes:
            try:
                with socket.create_connection((str(n.address), 2376), timeout=0.5):
                    pass
            except OSError:
                down += 1
        worst[0] = max(worst[0], down)
        time.sleep(0.05)


def test_rotate_new_certificates_one_node_down_at_a_time(configured, cli):
    site = _site(configured)
    certs = _client(site)
    before = {n.name: docker_api.presented_certificate(n.name, str(n.address), certs) for n in site.nodes}
    client_before = certs.cert.read_bytes()
    stop, worst = threading.Event(), [0]
    watcher = threading.Thread(target=_api_watch, args=(site, stop, worst), daemon=True)
    watcher.start()
    try:
        r = cli("tls", "rotate", configured.site_file, "--yes")
    finally:
        stop.set()
        watcher.join(10)
    assert r.code == 0, r.stderr
    assert worst[0] <= 1
    assert certs.cert.read_bytes() != client_before
    for n in site.nodes:
        after = docker_api.presented_certificate(n.name, str(n.address), certs)
        assert after != before[n.name]
        info = cert_info(load_cert_pem(after, n.name))
        assert info.ip_addresses == (str(n.address),) and info.eku == ("serverAuth",)
        assert docker_api.ping(n.name, str(n.address), certs)["ApiVersion"]
    assert cli("tls", "plan", configured.site_file, "--detailed-exitcode").code == 0


def _site_copy(lab, tmp_path: Path, known_hosts_text: str) -> Path:
    doc = yaml.safe_load(lab.site_file.read_text())
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_text)
    doc["ssh"]["known_hosts"] = str(kh)
    out = tmp_path / "site.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


def test_changed_host_key_stops_apply(lab, cli, operator_key, tmp_path):
    site = _site(lab)
    victim = site.nodes[0]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")], check=True)
    impostor = (tmp_path / "impostor.pub").read_text().split()
    lines = []
    for line in site.ssh.known_hosts.read_text().splitlines():
        if line.split()[0] == str(victim.address):
            line = f"{victim.address} {impostor[0]} {impostor[1]}"
        lines.append(line)
    copy = _site_copy(lab, tmp_path, "\n".join(lines) + "\n")
    before = (tmp_path / "known_hosts").read_text()
    for extra in ((), ("--trust-new-hosts",)):
        r = cli("tls", "apply", copy, "--yes", *extra)
        assert r.code == 1
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and f"node {victim.name}" in err[0] and "HOST KEY CHANGED" in err[0]
        assert err[0].count("SHA256:") == 2
        assert "Traceback" not in r.stderr
    assert (tmp_path / "known_hosts").read_text() == before


def test_first_contact_needs_trust_new_hosts(lab, cli, operator_key, tmp_path):
    copy = _site_copy(lab, tmp_path, "")
    r = cli("tls", "plan", copy)
    assert r.code == 1 and "--trust-new-hosts" in r.stderr and "SHA256:" in r.stderr
    r = cli("tls", "apply", copy, "--yes", "--trust-new-hosts")
    assert r.code == 0, r.stderr
    recorded = sorted((tmp_path / "known_hosts").read_text().splitlines())
    assert recorded == sorted(_site(lab).ssh.known_hosts.read_text().splitlines())  # the lab's pinned keys
    assert r.stderr.count("recorded new host key") == len(_site(lab).nodes)


def test_docker_env_works_with_the_docker_cli(configured, cli):
    docker = shutil.which("docker") or "/usr/bin/docker"
    site = _site(configured)
    node = site.nodes[-1]
    r = cli("docker-env", configured.site_file, node.name)
    assert r.code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    for line in r.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    assert env["DOCKER_HOST"] == f"tcp://{node.address}:2376"
    out = subprocess.run([docker, "info", "--format", "{{.Name}}"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == node.name


def test_wrong_ca_passphrase_is_one_line_and_changes_nothing(configured, cli, tmp_path, monkeypatch):
    site = _site(configured)
    doc = yaml.safe_load(configured.site_file.read_text())
    doc["pki"]["ca_passphrase"] = "env:TVDEPLOY_TEST_WRONG_CA_PASS"
    monkeypatch.setenv("TVDEPLOY_TEST_WRONG_CA_PASS", "definitely-wrong")
    copy = tmp_path / "site.yaml"
    copy.write_text(yaml.safe_dump(doc))
    pids = _dockerd_pids(site)
    r = cli("tls", "rotate", copy, "--yes")
    assert r.code == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    err = r.stderr.strip().splitlines()[-1]
    assert "ca-key.pem: cannot decrypt the site CA key: wrong pki.ca_passphrase" in err
    assert "definitely-wrong" not in r.stderr + r.stdout
    assert _dockerd_pids(site) == pids


def test_status_lists_every_certificate_with_expiry(configured, cli):
    site = _site(configured)
    r = cli("tls", "status", configured.site_file, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {c["name"]: c for c in doc["certificates"]}
    assert set(rows) == {"site CA", "operator"} | {n.name for n in site.nodes}
    assert rows["operator"]["eku"] == ["clientAuth"] and 0 < rows["operator"]["days_left"] <= 30
    for n in site.nodes:
        assert rows[n.name]["state"] == "ok" and rows[n.name]["days_left"] > 300
        assert abs(rows[n.name]["clock_offset_seconds"]) < 5
