"""`lab up` on the real machine: nodes reachable over SSH with pinned host keys, dockerd
answering, unconfigured, air-gapped; a valid site file; status shape; idempotent re-run."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import LabInfo, run_lab
from tests.integration.lab_helpers import ssh

pytestmark = pytest.mark.lab


def test_every_node_answers_ssh_with_a_pinned_host_key(lab: LabInfo) -> None:
    from tvdeploy.config.load import load_site

    site = load_site(lab.site_file)
    assert len(site.nodes) == 3
    for node in site.nodes:
        r = ssh(lab.dir, str(node.address), "hostname; docker info --format '{{.Name}} {{.Swarm.LocalNodeState}}'")
        assert r.returncode == 0, r.stderr
        hostname, info = r.stdout.split("\n")[:2]
        assert hostname == node.name
        assert info.split()[0] == node.name


def test_a_wrong_host_key_is_refused(lab: LabInfo, tmp_path) -> None:
    node = lab.status["nodes"][0]
    other = lab.status["nodes"][1]
    # Give node 0's address the host key of node 1: strict checking must refuse.
    lines = (lab.dir / "ssh" / "known_hosts").read_text().splitlines()
    key_of = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    fake = tmp_path / "lab"
    (fake / "ssh").mkdir(parents=True)
    (fake / "ssh" / "known_hosts").write_text(f"{node['address']} {key_of[other['address']]}\n")
    (fake / "ssh" / "id_ed25519").write_bytes((lab.dir / "ssh" / "id_ed25519").read_bytes())
    (fake / "ssh" / "id_ed25519").chmod(0o600)
    r = ssh(fake, node["address"], "true")
    assert r.returncode != 0
    assert "Host key verification failed" in r.stderr


def test_nodes_have_no_route_beyond_the_lab_bridge(lab: LabInfo) -> None:
    # Only route lookups: nothing is sent anywhere outside the lab.
    for node in lab.status["nodes"]:
        r = ssh(lab.dir, node["address"], "ip route show default; ip route get 1.1.1.1; ip route get 192.0.2.1")
        assert r.stdout.strip() == ""
        assert r.stderr.count("Network is unreachable") == 2, r.stderr


def test_nodes_are_unconfigured_and_have_their_own_docker(lab_reset: LabInfo) -> None:
    ids = set()
    for node in lab_reset.status["nodes"]:
        r = ssh(lab_reset.dir, node["address"],
                "test ! -e /etc/docker/daemon.json && echo no-daemon-json; "
                "docker info --format '{{.ID}} {{.Swarm.LocalNodeState}} {{.Images}}'")  # fmt: skip
        assert r.returncode == 0, r.stderr
        first, info = r.stdout.splitlines()
        assert first == "no-daemon-json"
        engine_id, swarm, images = info.split()
        assert (swarm, images) == ("inactive", "0")
        ids.add(engine_id)
    assert len(ids) == 3  # three engines, not one seen three times


def test_status_has_the_documented_shape(lab: LabInfo) -> None:
    doc = json.loads(run_lab("status", "--dir", lab.dir).stdout)
    assert doc["state"] == "up"
    assert set(doc) >= {"state", "vcenter", "nodes", "build_engine", "site_file"}
    assert doc["build_engine"]["docker_host"] == f"unix://{lab.dir}/engine/docker.sock"
    assert doc["site_file"] == str(lab.site_file)
    for node in doc["nodes"]:
        assert set(node) >= {"name", "address", "state"}
        assert node["state"] == "up"
    if doc["vcenter"] is not None:
        assert doc["vcenter"]["url"].startswith("https://127.0.0.1:")
        assert len(doc["vcenter"]["fingerprint"]) == 64


def test_site_file_validates_and_pins_what_the_lab_made(lab: LabInfo, cli) -> None:
    r = cli("site", "validate", lab.site_file)
    assert r.code == 0, r.stderr
    from tvdeploy.config.load import load_site

    site = load_site(lab.site_file)
    assert site.swarm.encrypted_networks is False and site.swarm.publish_mode == "host"
    assert site.state_dir == lab.dir / "state"
    assert str(site.network.gateway) == lab.status["subnet"].replace(".0/24", ".1")
    hosts = {line.split()[0] for line in site.ssh.known_hosts.read_text().splitlines()}
    assert hosts >= {str(n.address) for n in site.nodes}
    assert oct(site.ssh.key.stat().st_mode & 0o777) == "0o600"
    if site.vcenter is not None:
        assert site.vcenter.fingerprint == lab.status["vcenter"]["fingerprint"]
        assert site.vcenter.password.startswith(f"file:{lab.dir}/")


def test_second_up_reuses_everything(lab: LabInfo) -> None:
    doc = json.loads(run_lab("up", "--dir", lab.dir).stdout)
    assert doc["created"] == []
    assert doc["state"] == "up"
    assert doc["seconds"] < 30  # generous: it only checks what runs


def test_pyvmomi_reaches_the_simulator_named_in_the_site_file(lab: LabInfo) -> None:
    from tvdeploy.config.load import load_site

    site = load_site(lab.site_file)
    if site.vcenter is None:
        pytest.skip("the vCenter simulator module is not available")
    vsphere = pytest.importorskip("tvdeploy.connectors.vsphere")
    with vsphere.connect(site) as session:  # the pin in the site file is what is checked
        placement = session.placement()
        assert placement.template.name == site.vcenter.template
