"""vm plan/apply/list/destroy against a real vCenter simulator (a fresh one per test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.vcsim_site import SimSite, clone_foreign, folder_vms, pyvmomi_session, sim_site

pytestmark = pytest.mark.lab


@pytest.fixture
def sim(tmp_path: Path, operator_key: str):
    yield from sim_site(tmp_path)


def _audit_events(home: Path, site: str) -> list[str]:
    log = home / "sites" / site / "audit" / "audit.log"
    return [json.loads(line)["event"] for line in log.read_text().splitlines() if line.strip()]


def test_apply_creates_every_node_then_plan_is_clean(cli, sim: SimSite, isolated_home: Path) -> None:
    r = cli("vm", "apply", sim.path, "--yes")
    assert r.code == 0, r.stderr
    r = cli("vm", "list", sim.path, "--json")
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows == [
        {"name": n["name"], "ip": n["address"], "power": "poweredOn", "cpus": n["cpus"],
         "memory_mb": n["memory_mb"], "owned": True}
        for n in sim.doc["nodes"]
    ]
    si = pyvmomi_session(sim.info)
    vms = folder_vms(si, sim.info)
    for node in sim.doc["nodes"]:
        vm = vms[node["name"]]
        assert vm.guest.hostName == node["name"]
        disk = next(d for d in vm.config.hardware.device if hasattr(d, "capacityInKB"))
        assert disk.capacityInKB == node["disk_gb"] * 1024 * 1024
    r = cli("vm", "plan", sim.path, "--detailed-exitcode")
    assert r.code == 0, r.stdout + r.stderr
    assert _audit_events(isolated_home, "simsite").count("vm.create") == 3
    # Re-running apply on a converged site changes nothing.
    r = cli("vm", "apply", sim.path, "--yes")
    assert r.code == 0 and "nothing to do" in r.stderr


def test_memory_change_shows_exactly_that_update(cli, sim: SimSite) -> None:
    assert cli("vm", "apply", sim.path, "--yes").code == 0
    sim.doc["nodes"][1]["memory_mb"] = 3072
    sim.write()
    r = cli("vm", "plan", sim.path, "--detailed-exitcode", "--json")
    assert r.code == 2, r.stderr
    plan = json.loads(r.stdout)
    changing = [s for s in plan["steps"] if s["kind"] != "no-op"]
    assert changing == [
        {"kind": "update", "name": "tv-node-2", "changes": [{"field": "memory_mb", "old": 2048, "new": 3072}],
         "power_cycle": True, "power_on": True}
    ]
    assert cli("vm", "apply", sim.path, "--yes").code == 0
    assert cli("vm", "plan", sim.path, "--detailed-exitcode").code == 0
    rows = {r["name"]: r for r in json.loads(cli("vm", "list", sim.path, "--json").stdout)}
    assert rows["tv-node-2"]["memory_mb"] == 3072 and rows["tv-node-2"]["power"] == "poweredOn"


def test_unmarked_vm_with_a_node_name_is_a_conflict_and_left_alone(cli, sim: SimSite) -> None:
    si = pyvmomi_session(sim.info)
    clone_foreign(si, sim.info, "tv-node-2")
    r = cli("vm", "plan", sim.path, "--json")
    kinds = {s["name"]: s["kind"] for s in json.loads(r.stdout)["steps"]}
    assert kinds == {"tv-node-1": "create", "tv-node-2": "conflict", "tv-node-3": "create"}
    assert "warning: vm tv-node-2: conflict" in r.stderr
    r = cli("vm", "apply", sim.path, "--yes")
    assert r.code == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: vm tv-node-2: conflict: existing VM has no tvdeploy marker")
    vms = folder_vms(si, sim.info)
    assert set(vms) == {"tv-node-2"}  # nothing created, the foreign VM untouched
    assert vms["tv-node-2"].config.hardware.numCPU == 1
    assert vms["tv-node-2"].runtime.powerState == "poweredOff"
    rows = json.loads(cli("vm", "list", sim.path, "--json").stdout)
    assert {r["name"]: r["owned"] for r in rows}["tv-node-2"] is False


def test_destroy_removes_only_marked_vms(cli, sim: SimSite) -> None:
    assert cli("vm", "apply", sim.path, "--yes").code == 0
    si = pyvmomi_session(sim.info)
    clone_foreign(si, sim.info, "someone-elses-vm")
    r = cli("vm", "destroy", sim.path)
    assert r.code == 1 and "refused: no terminal" in r.stderr  # no --yes, no TTY
    assert len(folder_vms(si, sim.info)) == 4
    r = cli("vm", "destroy", sim.path, "--yes")
    assert r.code == 0, r.stderr
    assert set(folder_vms(si, sim.info)) == {"someone-elses-vm"}


def test_prune_deletes_orphans_only_when_asked(cli, sim: SimSite) -> None:
    assert cli("vm", "apply", sim.path, "--yes").code == 0
    sim.doc["nodes"] = sim.doc["nodes"][:1]
    sim.write()
    plan = json.loads(cli("vm", "plan", sim.path, "--json").stdout)
    assert [s["kind"] for s in plan["steps"]] == ["no-op", "orphan", "orphan"]
    assert cli("vm", "apply", sim.path, "--yes").code == 0
    assert len(folder_vms(pyvmomi_session(sim.info), sim.info)) == 3
    assert cli("vm", "apply", sim.path, "--yes", "--prune").code == 0
    assert set(folder_vms(pyvmomi_session(sim.info), sim.info)) == {"tv-node-1"}


def test_apply_json_emits_event_lines(cli, sim: SimSite) -> None:
    r = cli("vm", "apply", sim.path, "--yes", "--json", "--parallel", "2")
    assert r.code == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["event"] == "plan"
    stages = [(e["vm"], e["stage"]) for e in events if e["event"] == "vm.stage"]
    assert ("tv-node-1", "clone") in stages and ("tv-node-3", "guest IP") in stages
    assert events[-1] == {"event": "apply.done", "changed": ["tv-node-1", "tv-node-2", "tv-node-3"]}
