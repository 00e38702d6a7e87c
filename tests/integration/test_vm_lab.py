"""vm apply against the shared lab (`lab up`): the simulated VMs' guest IPs are the lab nodes'
addresses, so provisioning, then SSH, then bootstrap run as on a real site."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.lab


def _ssh_banner(address: str) -> bytes:
    with socket.create_connection((address, 22), timeout=5) as s:
        s.settimeout(5)
        return s.recv(64)


def test_provision_the_lab_nodes_then_destroy(cli, lab, lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lab's operator home: the audit log in the lab's state dir is signed by its key.
    monkeypatch.setenv("TVDEPLOY_HOME", str(lab_home))
    nodes = yaml.safe_load(lab.site_file.read_text())["nodes"]
    r = cli("vm", "apply", lab.site_file, "--yes")
    assert r.code == 0, r.stderr
    rows = json.loads(cli("vm", "list", lab.site_file, "--json").stdout)
    assert [(r["name"], r["ip"], r["power"], r["owned"]) for r in rows] == [
        (n["name"], n["address"], "poweredOn", True) for n in nodes
    ]
    assert cli("vm", "plan", lab.site_file, "--detailed-exitcode").code == 0
    for row in rows:  # the guest IP of each VM is a real lab node running sshd
        assert _ssh_banner(row["ip"]).startswith(b"SSH-2.0-")
    r = cli("vm", "destroy", lab.site_file, "--yes")
    assert r.code == 0, r.stderr
    rows = json.loads(cli("vm", "list", lab.site_file, "--json").stdout)
    assert {r["power"] for r in rows} == {"absent"}
