"""`lab up --bare`: nodes on a Debian 12 root of their own, with sshd and without Docker."""

from __future__ import annotations

import json

import pytest

from tests.integration.bare_lab import bare_home, bare_lab  # noqa: F401 - fixtures
from tests.integration.conftest import LabInfo, run_lab
from tests.integration.lab_helpers import ssh

pytestmark = pytest.mark.lab


def test_a_bare_node_has_its_own_root_and_no_docker(bare_lab: LabInfo) -> None:  # noqa: F811
    run_lab("reset", "--dir", bare_lab.dir)  # other tests of the session may have installed an engine
    doc = json.loads(run_lab("status", "--dir", bare_lab.dir).stdout)
    assert [n["state"] for n in doc["nodes"]] == ["bare"] * len(doc["nodes"])
    node = bare_lab.status["nodes"][0]
    r = ssh(bare_lab.dir, node["address"],
            "hostname; cat /etc/debian_version; command -v dockerd containerd runc python3 || true; "
            "ls /var/lib/docker | wc -l; ip route | grep -c default || true; pgrep -c dockerd || true")
    assert r.returncode == 0, r.stderr
    name, version, *rest = r.stdout.split()
    assert name == node["name"]
    assert version.startswith("12.")
    assert rest == ["0", "0", "0"]  # no docker binaries (nor the host's python3), no route out


def test_reset_wipes_what_a_bare_node_installed(bare_lab: LabInfo) -> None:  # noqa: F811
    node = bare_lab.status["nodes"][-1]
    assert ssh(bare_lab.dir, node["address"], "touch /usr/local/bin/installed").returncode == 0
    run_lab("reset", "--dir", bare_lab.dir)
    r = ssh(bare_lab.dir, node["address"], "ls /usr/local/bin | wc -l")
    assert r.stdout.strip() == "0", r.stderr
    doc = json.loads(run_lab("status", "--dir", bare_lab.dir).stdout)
    assert {n["state"] for n in doc["nodes"]} == {"bare"}
