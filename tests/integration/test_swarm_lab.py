"""Swarm formation and upkeep on the real lab: namespace nodes with real dockerd and sshd.

One lab and ONE bootstrap from unconfigured nodes for the whole module (each bootstrap costs CI
time); the scenarios then run in file order, each leaving the swarm converged for the next:
formed -> idempotent -> overlay traffic -> escrow -> lost escrow -> locked manager -> cut-off node
-> node added -> worker removed -> manager role swapped (promote before demote).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_lab
from tests.integration.swarm_helpers import (
    load_image,
    manager_client,
    running_tasks,
    small_image,
    wait_for,
    write_site,
)

pytestmark = pytest.mark.lab

NODES = 4  # the lab's topology: 3 managers (core) + 1 worker (edge)


@dataclass
class SwarmLab:
    dir: Path
    home: Path
    site: Path
    docker_host: str
    bootstrap: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def swarm_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A lab of this module's own (it grows a node and restarts dockerd: not the shared lab)."""
    base = tmp_path_factory.mktemp("swarm")
    home, lab_dir = base / "home", base / "lab"
    try:
        run_lab("up", "--dir", lab_dir, "--nodes", NODES, home=home)
        env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "tvdeploy", "swarm", "bootstrap", str(lab_dir / "site.yaml"), "--yes"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        docker_host = f"unix://{lab_dir / 'engine' / 'docker.sock'}"
        yield SwarmLab(lab_dir, home, lab_dir / "site.yaml", docker_host, proc)
    finally:
        subprocess.run(
            [sys.executable, "-m", "tvdeploy", "lab", "down", "--dir", str(lab_dir)],
            env={**os.environ, "TVDEPLOY_HOME": str(home)},
            capture_output=True,
            timeout=300,
            check=False,
        )


@pytest.fixture(autouse=True)
def _lab_home(isolated_home: Path, swarm_lab: SwarmLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """After conftest's per-test home: use the module's, which holds the key the escrow is
    sealed to."""
    monkeypatch.setenv("TVDEPLOY_HOME", str(swarm_lab.home))


def _site(path: Path) -> Any:
    from tvdeploy.config.load import load_site

    return load_site(path)


def _clients(path: Path) -> Any:
    from tvdeploy.execute.swarm_session import Clients, open_clients

    return open_clients(_site(path), Clients())


def _status(cli: Any, site: Path) -> dict[str, Any]:
    r = cli("swarm", "status", site, "--json")
    assert r.code == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _audit(site: Path) -> list[dict[str, Any]]:
    from tvdeploy.audit.recorder import site_log_path

    path = site_log_path(_site(site))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ready(cli: Any, site: Path) -> dict[str, Any] | None:
    doc = _status(cli, site)
    return doc if all(n["state"] == "ready" for n in doc["nodes"]) and not doc["findings"] else None


def test_bootstrap_forms_the_declared_swarm(cli: Any, swarm_lab: SwarmLab) -> None:
    assert swarm_lab.bootstrap.returncode == 0, swarm_lab.bootstrap.stderr[-2000:]
    site = _site(swarm_lab.site)
    doc = _status(cli, swarm_lab.site)
    assert set(doc) == {"cluster_id", "autolock", "managers", "nodes", "findings"}
    assert doc["cluster_id"] and doc["autolock"] is True
    assert doc["managers"] == len(site.managers) == 3
    assert {n["name"] for n in doc["nodes"]} == {n.name for n in site.nodes}
    for n in doc["nodes"]:
        assert set(n) == {"name", "address", "role", "state", "availability", "engine", "cert_expires"}
        assert (n["state"], n["availability"]) == ("ready", "active")
        assert n["role"] == site.node(n["name"]).role and n["address"] == str(site.node(n["name"]).address)
        assert n["engine"] and n["cert_expires"].endswith("Z")
    assert doc["findings"] == []
    with _clients(swarm_lab.site) as clients:
        manager = manager_client(clients, site)
        labels = {n["Description"]["Hostname"]: n["Spec"].get("Labels", {}) for n in manager.api.nodes()}
        overlays = {n["Name"]: n for n in manager.api.networks(filters={"driver": "overlay"})}
    assert labels == {n.name: {"zone": n.zone} for n in site.nodes}
    for name in ("tv-frontend", "tv-backend", "tv-data"):
        assert "encrypted" not in (overlays[name].get("Options") or {})  # the lab says encrypted: false


def test_preflight_reports_missing_esp_and_ipvs_as_warnings(cli: Any, swarm_lab: SwarmLab) -> None:
    r = cli("swarm", "plan", swarm_lab.site, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    kernel = {(f["node"], f["check"]): f for f in doc["findings"] if f["check"].startswith("kernel.")}
    for node in _site(swarm_lab.site).nodes:
        assert kernel[(node.name, "kernel.esp")]["severity"] == "warning"
        assert "encrypted_networks: false" in kernel[(node.name, "kernel.esp")]["message"]
        assert kernel[(node.name, "kernel.ipvs")]["severity"] == "warning"
        assert "publish_mode: host" in kernel[(node.name, "kernel.ipvs")]["message"]
    assert not [f for f in doc["findings"] if f["severity"] == "error"]
    assert "kernel lacks ESP" in swarm_lab.bootstrap.stdout and "kernel lacks IPVS" in swarm_lab.bootstrap.stdout


def test_second_plan_and_bootstrap_change_nothing(cli: Any, swarm_lab: SwarmLab) -> None:
    r = cli("swarm", "plan", swarm_lab.site, "--detailed-exitcode")
    assert r.code == 0, r.stdout + r.stderr
    assert "swarm: nothing to do" in r.stdout and "tls: nothing to do" in r.stdout
    before = len(_audit(swarm_lab.site))
    r = cli("swarm", "bootstrap", swarm_lab.site, "--yes")
    assert r.code == 0, r.stderr
    assert "nothing to do" in r.stdout
    assert len(_audit(swarm_lab.site)) == before  # no change, no record


def test_overlay_network_carries_traffic_between_nodes(swarm_lab: SwarmLab) -> None:
    from docker.types import EndpointSpec, RestartPolicy

    site = _site(swarm_lab.site)
    ref = small_image(swarm_lab.docker_host)
    with _clients(swarm_lab.site) as clients:
        load_image(swarm_lab.docker_host, ref, clients)
        manager = manager_client(clients, site)
        # dnsrr: the name resolves to the task itself; a VIP would need IPVS, which the lab lacks.
        # ServiceCollection.create asks no registry (no image resolution): the nodes are offline.
        manager.services.create(
            ref,
            ["sh", "-c", "echo overlay-ok > /tmp/i.html; exec httpd -f -p 8080 -h /tmp"],
            name="overlay-srv",
            networks=["tv-backend"],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            constraints=["node.hostname==lab-wkr-1"],
        )
        manager.services.create(
            ref,
            [
                "sh",
                "-c",
                "i=0; while [ $i -lt 30 ]; do "
                "printf 'GET /i.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 overlay-srv 8080 | grep -q overlay-ok "
                "&& exit 0; i=$((i+1)); sleep 1; done; exit 1",
            ],
            name="overlay-cli",
            networks=["tv-backend"],
            constraints=["node.hostname==lab-mgr-1"],
            restart_policy=RestartPolicy(condition="none"),
        )
        try:

            def finished() -> str | None:
                tasks = manager.api.tasks(filters={"service": "overlay-cli"})
                state = tasks[0]["Status"]["State"] if tasks else ""
                return state if state in ("complete", "failed", "rejected") else None

            assert wait_for(finished, timeout=120) == "complete"
            srv_nodes = {t["NodeID"] for t in running_tasks(manager, "overlay-srv")}
            cli_nodes = {t["NodeID"] for t in manager.api.tasks(filters={"service": "overlay-cli"})}
            assert srv_nodes and cli_nodes and not srv_nodes & cli_nodes  # really two nodes
        finally:
            for name in ("overlay-cli", "overlay-srv"):
                manager.api.remove_service(name)


def test_unlock_key_is_escrowed_and_shown_only_when_asked(cli: Any, swarm_lab: SwarmLab) -> None:
    site = _site(swarm_lab.site)
    with _clients(swarm_lab.site) as clients:
        key = manager_client(clients, site).api.get_unlock_key()["UnlockKey"]
    r = cli("swarm", "unlock-key", swarm_lab.site)
    assert r.code == 0 and key not in r.stdout + r.stderr
    assert "unlock-key.escrow" in r.stdout and "sealed to 1 key(s)" in r.stdout
    assert key not in (swarm_lab.bootstrap.stdout + swarm_lab.bootstrap.stderr)
    assert not any(key in json.dumps(rec) for rec in _audit(swarm_lab.site))
    r = cli("swarm", "unlock-key", swarm_lab.site, "--show")
    assert r.code == 0 and r.stdout.strip() == key
    assert _audit(swarm_lab.site)[-1]["event"] == "swarm.unlock-key.show"


def test_lost_escrow_is_planned_and_restored(cli: Any, swarm_lab: SwarmLab) -> None:
    from tvdeploy.execute.unlock_escrow import escrow_path

    path = escrow_path(_site(swarm_lab.site))
    kept = path.read_bytes()
    path.unlink()
    r = cli("swarm", "plan", swarm_lab.site, "--detailed-exitcode")
    assert r.code == 2 and "  escrow" in r.stdout
    r = cli("swarm", "bootstrap", swarm_lab.site, "--yes")
    assert r.code == 0, r.stderr
    assert _audit(swarm_lab.site)[-1]["event"] == "swarm.escrow"
    assert path.is_file() and path.read_bytes() != kept  # sealed again (fresh ephemeral keys)
    assert cli("swarm", "plan", swarm_lab.site, "--detailed-exitcode").code == 0


def test_restarted_manager_comes_back_locked_and_unlock_brings_it_back(cli: Any, swarm_lab: SwarmLab) -> None:
    run_lab("node", "stop", "lab-mgr-2", "--dir", swarm_lab.dir, home=swarm_lab.home)
    run_lab("node", "start", "lab-mgr-2", "--dir", swarm_lab.dir, home=swarm_lab.home)
    doc = _status(cli, swarm_lab.site)
    state = {n["name"]: n["state"] for n in doc["nodes"]}
    assert state["lab-mgr-2"] == "locked"
    assert any(f["node"] == "lab-mgr-2" and "unlock" in f["message"] for f in doc["findings"])
    r = cli("swarm", "unlock", swarm_lab.site)
    assert r.code == 0, r.stderr
    assert "unlocked lab-mgr-2" in r.stdout
    wait_for(lambda: _ready(cli, swarm_lab.site), timeout=60)
    r = cli("swarm", "unlock", swarm_lab.site)
    assert r.code == 0 and "no manager is locked" in r.stdout


def test_cut_off_node_is_a_finding_and_bootstrap_refuses(cli: Any, swarm_lab: SwarmLab) -> None:
    run_lab("node", "isolate", "lab-wkr-1", "--dir", swarm_lab.dir, home=swarm_lab.home)
    try:
        before = len(_audit(swarm_lab.site))
        r = cli("swarm", "plan", swarm_lab.site, "--json")
        assert r.code == 0, r.stderr
        errors = {(f["node"], f["check"]) for f in json.loads(r.stdout)["findings"] if f["severity"] == "error"}
        assert ("lab-wkr-1", "reachable") in errors
        assert ("lab-mgr-1", "port.7946/tcp") in errors  # the others cannot reach it either
        r = cli("swarm", "bootstrap", swarm_lab.site, "--yes")
        assert r.code == 1 and "Traceback" not in r.stderr
        assert [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")] == [
            next(ln for ln in r.stderr.splitlines() if ln.startswith("error: pre-flight: node lab-wkr-1"))
        ]
        assert len(_audit(swarm_lab.site)) == before  # refused before any change
    finally:
        run_lab("node", "rejoin", "lab-wkr-1", "--dir", swarm_lab.dir, home=swarm_lab.home)
    wait_for(lambda: _ready(cli, swarm_lab.site), timeout=90)


def test_added_node_joins_alone(cli: Any, swarm_lab: SwarmLab) -> None:
    import yaml

    added = json.loads(run_lab("node", "add", "--dir", swarm_lab.dir, home=swarm_lab.home).stdout)
    grown = write_site(swarm_lab.site, swarm_lab.dir / "site-grown.yaml", add=yaml.safe_load(added["entry"]))
    before = len(_audit(grown))
    r = cli("swarm", "bootstrap", grown, "--yes")
    assert r.code == 0, r.stderr
    new = _audit(grown)[before:]
    touched = {o.get("name") for rec_ in new for o in rec_["objects"] if o.get("type") == "node"}
    assert touched == {added["name"]}, [r_["event"] for r_ in new]
    assert [r_["event"] for r_ in new if r_["event"].startswith("swarm.")] == ["swarm.join-worker", "swarm.label"]
    doc = wait_for(lambda: _ready(cli, grown), timeout=60)
    assert {n["name"] for n in doc["nodes"]} == {n.name for n in _site(grown).nodes}
    assert cli("swarm", "plan", grown, "--detailed-exitcode").code == 0


def test_removed_worker_is_drained_then_removed(cli: Any, swarm_lab: SwarmLab) -> None:
    from docker.types import ServiceMode

    grown = swarm_lab.dir / "site-grown.yaml"  # written by the previous test
    shrunk = write_site(grown, swarm_lab.dir / "site-shrunk.yaml", drop=("lab-wkr-1",))
    site = _site(grown)
    ref = small_image(swarm_lab.docker_host)
    with _clients(grown) as clients:
        load_image(swarm_lab.docker_host, ref, {"lab-wkr-2": clients["lab-wkr-2"]})
        manager = manager_client(clients, site)
        ids = {n["Description"]["Hostname"]: n["ID"] for n in manager.api.nodes()}
        manager.services.create(
            ref,
            ["sleep", "3600"],
            name="spread",
            mode=ServiceMode("replicated", replicas=2),
            constraints=["node.role==worker"],
        )
        try:
            on = wait_for(
                lambda: (
                    {t["NodeID"] for t in running_tasks(manager, "spread")}
                    if len(running_tasks(manager, "spread")) == 2
                    else None
                )
            )
            assert ids["lab-wkr-1"] in on  # spread puts one task on each worker
            before = len(_audit(shrunk))
            r = cli("swarm", "bootstrap", shrunk, "--yes")
            assert r.code == 0, r.stderr
            events = [(e["event"], e["objects"][0].get("name")) for e in _audit(shrunk)[before:]]
            assert events == [("swarm.drain", "lab-wkr-1"), ("swarm.leave", "lab-wkr-1"), ("swarm.remove", "lab-wkr-1")]
            after = wait_for(
                lambda: running_tasks(manager, "spread") if len(running_tasks(manager, "spread")) == 2 else None
            )
            assert {t["NodeID"] for t in after} == {ids["lab-wkr-2"]}  # both tasks moved
            assert "lab-wkr-1" not in {n["Description"]["Hostname"] for n in manager.api.nodes()}
            assert clients["lab-wkr-1"].info()["Swarm"]["LocalNodeState"] == "inactive"  # it left
            # A rerun after an interruption between leave and remove: leaving again is a no-op.
            from tvdeploy.execute.swarm import SwarmExecutor
            from tvdeploy.plan.swarm import Step
            from tvdeploy.reporting import NullReporter

            addr = str(site.node("lab-wkr-1").address)
            again = SwarmExecutor(_site(shrunk), {f"addr:{addr}": clients["lab-wkr-1"]}, NullReporter())
            again.leave(Step("leave", "lab-wkr-1", {"address": addr}))
        finally:
            manager.api.remove_service("spread")
    assert cli("swarm", "plan", shrunk, "--detailed-exitcode").code == 0


def test_role_swap_promotes_before_it_demotes(cli: Any, swarm_lab: SwarmLab) -> None:
    import yaml

    shrunk = swarm_lab.dir / "site-shrunk.yaml"  # written by the previous test
    doc = yaml.safe_load(shrunk.read_text())
    roles = {"lab-wkr-2": "manager", "lab-mgr-3": "worker"}
    for node in doc["nodes"]:
        node["role"] = roles.get(node["name"], node["role"])
    swapped = swarm_lab.dir / "site-swapped.yaml"
    swapped.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("swarm", "plan", swapped, "--json")
    assert [(s["kind"], s["node"]) for s in json.loads(r.stdout)["steps"]] == [
        ("promote", "lab-wkr-2"),
        ("demote", "lab-mgr-3"),
    ]
    before = len(_audit(swapped))
    r = cli("swarm", "bootstrap", swapped, "--yes")
    assert r.code == 0, r.stderr
    assert [e["event"] for e in _audit(swapped)[before:]] == ["swarm.promote", "swarm.demote"]
    doc = wait_for(lambda: _ready(cli, swapped), timeout=60)
    assert doc["managers"] == 3
    assert {n["name"]: n["role"] for n in doc["nodes"]} == {
        "lab-mgr-1": "manager",
        "lab-mgr-2": "manager",
        "lab-mgr-3": "worker",
        "lab-wkr-2": "manager",
    }
    assert cli("swarm", "plan", swapped, "--detailed-exitcode").code == 0
