"""`lab node stop|start|isolate|rejoin` on the shared lab (each restores what it changed) and
`lab node add` on a lab of its own."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.integration.conftest import LabInfo, run_lab
from tests.integration.lab_helpers import ssh

pytestmark = pytest.mark.lab


def _node(lab: LabInfo, i: int) -> dict[str, str]:
    return lab.status["nodes"][i]


def _states(lab: LabInfo) -> dict[str, str]:
    doc = json.loads(run_lab("status", "--dir", lab.dir).stdout)
    return {n["name"]: n["state"] for n in doc["nodes"]}


def test_stop_and_start_the_docker_engine_of_a_node(lab: LabInfo) -> None:
    node = _node(lab, 2)
    run_lab("node", "stop", node["name"], "--dir", lab.dir)
    try:
        assert _states(lab)[node["name"]] == "docker-stopped"
        r = ssh(lab.dir, node["address"], "docker info >/dev/null 2>&1 || echo down")
        assert r.stdout.strip() == "down"
    finally:
        run_lab("node", "start", node["name"], "--dir", lab.dir)
    assert _states(lab)[node["name"]] == "up"
    r = ssh(lab.dir, node["address"], "docker info --format '{{.Name}}'")
    assert r.stdout.strip() == node["name"]


def test_service_docker_restart_over_ssh_returns_when_dockerd_answers(lab: LabInfo) -> None:
    node = _node(lab, 1)
    r = ssh(lab.dir, node["address"], "service docker restart && docker info --format '{{.Name}}'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == node["name"]


def test_isolate_cuts_the_link_and_rejoin_restores_it(lab: LabInfo) -> None:
    node, peer = _node(lab, 2), _node(lab, 0)
    run_lab("node", "isolate", node["name"], "--dir", lab.dir)
    try:
        assert _states(lab)[node["name"]] == "isolated"
        with pytest.raises(OSError):
            socket.create_connection((node["address"], 22), timeout=1).close()
        r = ssh(lab.dir, peer["address"], f"timeout 2 nc -z {node['address']} 22 && echo reached || echo cut")
        assert r.stdout.strip() == "cut"
    finally:
        run_lab("node", "rejoin", node["name"], "--dir", lab.dir)
    assert _states(lab)[node["name"]] == "up"
    r = ssh(lab.dir, node["address"], "hostname")
    assert r.stdout.strip() == node["name"]


def test_add_starts_an_unconfigured_node_and_prints_its_entry(tmp_path: Path) -> None:
    d = Path("/tmp") / f"tvl-add-{tmp_path.name[-12:]}"
    try:
        run_lab("up", "--dir", d, "--nodes", "1", home=tmp_path)
        doc = json.loads(run_lab("node", "add", "--dir", d, home=tmp_path).stdout)
        assert doc["name"] == "lab-wkr-1" and doc["role"] == "worker"
        assert f"address: {doc['address']}" in doc["entry"]
        r = ssh(d, doc["address"], "hostname; test -e /etc/docker/daemon.json || echo unconfigured")
        assert r.stdout.split() == ["lab-wkr-1", "unconfigured"], r.stderr
        status = json.loads(run_lab("status", "--dir", d, home=tmp_path).stdout)
        assert [n["state"] for n in status["nodes"]] == ["up", "up"]
        assert "lab-wkr-1" not in (d / "site.yaml").read_text()  # the operator adds it
    finally:
        run_lab("down", "--dir", d, home=tmp_path)


def test_unknown_node_is_one_error_line(lab: LabInfo) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tvdeploy", "lab", "node", "stop", "no-such-node", "--dir",
                        str(lab.dir)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "no-such-node" in r.stderr
    assert "Traceback" not in r.stderr


def test_up_brings_back_a_stopped_engine_and_a_cut_link(lab: LabInfo) -> None:
    stopped, cut = _node(lab, 1), _node(lab, 2)
    run_lab("node", "stop", stopped["name"], "--dir", lab.dir)
    run_lab("node", "isolate", cut["name"], "--dir", lab.dir)
    try:
        doc = json.loads(run_lab("up", "--dir", lab.dir).stdout)
        assert f"{stopped['name']} dockerd" in doc["created"]
        assert {n["name"]: n["state"] for n in doc["nodes"]} == {n["name"]: "up" for n in lab.status["nodes"]}
    finally:
        run_lab("node", "rejoin", cut["name"], "--dir", lab.dir)
        run_lab("up", "--dir", lab.dir)
