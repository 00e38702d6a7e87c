"""The VM planner, data-driven: tests/unit/data/plan_vms/*.json hold desired nodes + vCenter facts
-> expected steps, one file per situation (every step kind is covered). No server."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tvdeploy.config.site import Site
from tvdeploy.facts.vms import DiskFact, NicFact, VmFact, parse_vm
from tvdeploy.plan.vms import desired_vms, list_rows, plan_destroy, plan_vms

DATA = Path(__file__).parent / "data" / "plan_vms"
CASES = sorted(DATA.glob("*.json"))


def _site(nodes: list[dict[str, Any]]) -> Site:
    return Site.model_validate(
        {
            "version": 1,
            "site": {"name": "plant"},
            "vcenter": {
                "host": "vcenter.plant.example",
                "user": "tvdeploy@vsphere.local",
                "password": "env:VC_PASSWORD",
                "fingerprint": "ab" * 32,
                "datacenter": "DC",
                "cluster": "C",
                "datastore": "DS",
                "folder": "trueverit",
                "template": "trueverit-debian12",
                "network": "VM Network",
            },
            "network": {"subnet": "10.20.0.0/24", "gateway": "10.20.0.1", "dns": ["10.20.0.2"],
                        "domain": "plant.example"},
            "nodes": nodes,
            "ssh": {"known_hosts": "/dev/null"},
        }
    )


def _fact(i: int, f: dict[str, Any], site: Site) -> VmFact:
    identity = f.get("identity")
    if identity == "@desired":
        identity = next((d.identity for d in desired_vms(site) if d.name == f["name"]), "undeclared")
    return VmFact(
        name=f["name"],
        moid=f"vm-{i}",
        power=f["power"],
        cpus=f["cpus"],
        memory_mb=f["memory_mb"],
        template=f.get("template", False),
        disks=(DiskFact("Hard disk 1", f["disk_gb"]),) if f.get("disk_gb") is not None else (),
        nics=(NicFact("Network adapter 1", f["network"]),) if f.get("network") is not None else (),
        marker=f.get("marker"),
        identity=identity,
        pending_customization=f.get("pending_customization", False),
    )


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_plan_case(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    site = _site(case["nodes"])
    facts = [_fact(i, f, site) for i, f in enumerate(case["facts"])]
    if case["mode"] == "destroy":
        plan = plan_destroy(facts, case["site_id"])
    else:
        plan = plan_vms(site, facts, case["site_id"], prune=case["prune"])
    assert [s.to_dict() for s in plan.steps] == case["expected"], case["description"]
    changing = {"create", "update", "power-on", "delete-orphan", "delete"}
    assert plan.changes == any(s["kind"] in changing for s in case["expected"])


def test_every_step_kind_is_covered() -> None:
    kinds = {s["kind"] for c in CASES for s in json.loads(c.read_text())["expected"]}
    assert kinds == {"create", "update", "power-on", "no-op", "orphan", "delete-orphan", "delete", "conflict"}


def test_identity_without_domain_or_gateway() -> None:
    site = _site([{"name": "n1", "role": "manager", "address": "10.20.0.11", "zone": "z"}])
    doc = site.model_dump(mode="json")
    doc["network"] = {"subnet": "10.20.0.0/24"}
    bare = Site.model_validate(doc)
    assert desired_vms(bare)[0].identity == "n1.localdomain 10.20.0.11/24 gw=- dns=-"


def test_parse_vm_reads_marker_identity_disks_and_nics() -> None:
    disk = SimpleNamespace(capacityInKB=20 * 1024 * 1024, deviceInfo=SimpleNamespace(label="Hard disk 1"))
    nic = SimpleNamespace(
        macAddress="00:50:56:00:00:01",
        deviceInfo=SimpleNamespace(label="Network adapter 1"),
        backing=SimpleNamespace(deviceName=None, network=SimpleNamespace(_moId="network-7")),
    )
    option = lambda k, v: SimpleNamespace(key=k, value=v)  # noqa: E731
    fact = parse_vm(
        "vm-42",
        {
            "name": "tv-mgr-1",
            "runtime.powerState": "poweredOn",
            "config.hardware.numCPU": 4,
            "config.hardware.memoryMB": 8192,
            "config.hardware.device": [SimpleNamespace(deviceInfo=SimpleNamespace(label="IDE 0")), disk, nic],
            # vcsim appends on reconfigure: the last value of a key wins.
            "config.extraConfig": [option("tvdeploy.site-id", "old"), option("tvdeploy.site-id", "site-A"),
                                   option("tvdeploy.identity", "x")],
            "guest.ipAddress": "10.20.0.11",
            "guest.hostName": "tv-mgr-1",
        },
        {"network-7": "VM-OT-Segment"},
    )
    assert fact == VmFact(
        name="tv-mgr-1", moid="vm-42", power="poweredOn", cpus=4, memory_mb=8192,
        disks=(DiskFact("Hard disk 1", 20),), nics=(NicFact("Network adapter 1", "VM-OT-Segment"),),
        ip="10.20.0.11", hostname="tv-mgr-1", marker="site-A", identity="x",
    )


def test_parse_vm_of_a_bare_vm_has_no_marker() -> None:
    fact = parse_vm("vm-1", {"name": "x"}, {})
    assert (fact.marker, fact.identity, fact.disks, fact.nics, fact.power) == (None, None, (), (), "poweredOff")


def test_list_rows_shape() -> None:
    site = _site([
        {"name": "n1", "role": "manager", "address": "10.20.0.11", "zone": "z", "cpus": 2, "memory_mb": 4096},
        {"name": "n2", "role": "worker", "address": "10.20.0.12", "zone": "z"},
    ])
    facts = [
        VmFact("n1", "vm-1", "poweredOn", 2, 4096, ip="10.20.0.11", marker="s"),
        VmFact("stray", "vm-2", "poweredOff", 1, 1024),
        VmFact("tpl", "vm-3", "poweredOff", 1, 1024, template=True),
    ]
    assert list_rows(site, facts, "s") == [
        {"name": "n1", "ip": "10.20.0.11", "power": "poweredOn", "cpus": 2, "memory_mb": 4096, "owned": True},
        {"name": "n2", "ip": None, "power": "absent", "cpus": None, "memory_mb": None, "owned": False},
        {"name": "stray", "ip": None, "power": "poweredOff", "cpus": 1, "memory_mb": 1024, "owned": False},
    ]
