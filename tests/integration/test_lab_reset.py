"""`lab reset` returns configured nodes (daemon.json, swarm, images) to unconfigured, fast."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import LabInfo, run_lab
from tests.integration.lab_helpers import ssh

pytestmark = pytest.mark.lab


def test_reset_wipes_swarm_config_and_images(lab: LabInfo) -> None:
    first = lab.status["nodes"][0]
    r = ssh(lab.dir, first["address"],
            f"docker swarm init --advertise-addr {first['address']} >/dev/null && "
            "mkdir -p /etc/docker/certs.d/x && echo '{\"debug\": true}' > /etc/docker/daemon.json && "
            "docker info --format '{{.Swarm.LocalNodeState}}'")  # fmt: skip
    assert r.stdout.strip() == "active", r.stderr
    doc = json.loads(run_lab("reset", "--dir", lab.dir).stdout)
    assert doc["seconds"] < 60
    for node in lab.status["nodes"]:
        r = ssh(lab.dir, node["address"],
                "ls -A /etc/docker | grep -v '^key.json$' | wc -l; "
                "docker info --format '{{.Swarm.LocalNodeState}} {{.Images}} {{.Containers}}'")  # fmt: skip
        assert r.returncode == 0, r.stderr
        leftovers, info = r.stdout.splitlines()
        assert leftovers.strip() == "0"
        assert info == "inactive 0 0"
        links = ssh(lab.dir, node["address"], "ip -o link show | grep -c docker_gwbridge || true")
        assert links.stdout.strip() == "0"
