"""Swarm facts and `swarm status` from Docker API answers recorded on the lab (5 nodes, 3
managers, autolock on). The client below replays those recorded answers; the live path is
covered by tests/integration/test_swarm_lab.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_plan_swarm import _site
from tvdeploy.facts.swarm import gather_swarm_facts, local_fact, member_fact
from tvdeploy.facts.swarm_model import LocalSwarmFact, MemberFact, SwarmFacts
from tvdeploy.plan.swarm import plan_swarm
from tvdeploy.plan.swarm_status import status_document, status_findings

DATA = Path(__file__).parent / "data" / "swarm_facts"
NODES = json.loads((DATA / "nodes.json").read_text())
SWARM = json.loads((DATA / "swarm.json").read_text())
INFO = json.loads((DATA / "info_swarm.json").read_text())

LAB = [
    ["lab-mgr-1", "manager", "core"],
    ["lab-mgr-2", "manager", "core"],
    ["lab-mgr-3", "manager", "core"],
    ["lab-wkr-1", "worker", "edge"],
    ["lab-wkr-2", "worker", "edge"],
]


class Recorded:
    """Replays the recorded answers of one node (a stand-in for docker.DockerClient)."""

    def __init__(self, swarm_info: dict[str, Any] | None) -> None:
        self.swarm_info = swarm_info
        self.api = self

    def info(self) -> dict[str, Any]:
        if self.swarm_info is None:
            raise ConnectionError("connection refused")
        return {"Swarm": self.swarm_info}

    def inspect_swarm(self) -> dict[str, Any]:
        return SWARM

    def nodes(self) -> list[dict[str, Any]]:
        return NODES

    def networks(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"Name": "ingress", "Ingress": True},
            {"Name": "tv-backend", "Options": {}},
            {"Name": "tv-data", "Options": {"encrypted": ""}},
        ]


def lab_site() -> Any:
    site = _site(LAB)
    nodes = [n.model_copy(update={"address": f"10.213.3.{11 + i}"}) for i, n in enumerate(site.nodes)]
    return site.model_copy(update={"nodes": nodes})


def test_member_facts_from_recorded_nodes() -> None:
    members = {m.hostname: m for m in map(member_fact, NODES)}
    assert set(members) == {n for n, _r, _z in LAB}
    assert sum(m.leader for m in members.values()) == 1
    for name, role, zone in LAB:
        m = members[name]
        assert (m.role, m.state, m.availability, m.labels) == (role, "ready", "active", {"zone": zone})
        assert m.address.startswith("10.213.3.") and m.engine.startswith("20.10")


def test_member_fact_of_a_damaged_answer_does_not_crash() -> None:
    m = member_fact({"ID": "x"})
    assert (m.node_id, m.role, m.state, m.availability, m.labels) == ("x", "worker", "unknown", "active", {})
    m = member_fact(
        {
            "ID": "y",
            "Status": {"Addr": "0.0.0.0"},
            "ManagerStatus": {"Addr": "10.0.0.5:2377", "Reachability": "unreachable"},
        }
    )
    assert m.address == "10.0.0.5" and m.reachable is False


def test_local_facts() -> None:
    assert local_fact(Recorded(INFO["lab-mgr-1"])).local_state == "active"
    assert local_fact(Recorded({"LocalNodeState": "locked"})).local_state == "locked"
    assert local_fact(Recorded(None)).local_state == "unreachable"
    assert local_fact(None).local_state == "unreachable"


def test_gather_from_recorded_answers_is_converged() -> None:
    site = lab_site()
    clients = {n.name: Recorded(INFO["lab-mgr-1"] if n.role == "manager" else INFO["lab-wkr-1"]) for n in site.nodes}
    facts = gather_swarm_facts(site, clients)
    assert facts.cluster_id == SWARM["ID"] and facts.autolock is True and facts.cert_expiry_hours == 2160
    assert facts.networks == {"tv-backend": False, "tv-data": True}
    plan = plan_swarm(site, facts)
    assert [s.kind for s in plan.steps] == ["network-create"]  # tv-frontend is missing in the recording


def test_fallback_is_used_only_where_the_api_does_not_answer() -> None:
    site = lab_site()
    clients: dict[str, Any] = {"lab-mgr-1": Recorded(INFO["lab-mgr-1"])}
    fallback = {n.name: LocalSwarmFact("inactive") for n in site.nodes}
    facts = gather_swarm_facts(site, clients, fallback)
    assert facts.local["lab-mgr-1"].local_state == "active"
    assert facts.local["lab-wkr-2"].local_state == "inactive"


def _facts(local: dict[str, str], members: list[MemberFact]) -> SwarmFacts:
    return SwarmFacts(
        local={k: LocalSwarmFact(v) for k, v in local.items()},
        members=members,
        cluster_id="c1",
        autolock=True,
        cert_expiry_hours=2160,
        networks={"tv-frontend": False, "tv-backend": False, "tv-data": False},
    )


def test_status_document_shape_and_findings() -> None:
    site = _site([["m1", "manager", "core"], ["w1", "worker", "edge"], ["w2", "worker", "edge"]])
    members = [
        MemberFact("id-m1", "m1", "10.0.0.1", "manager", "ready", "active", {"zone": "core"}, "20.10.24"),
        MemberFact("id-w1", "w1", "10.0.0.2", "worker", "down", "active", {"zone": "edge"}, "20.10.24"),
        MemberFact("id-x", "old", "10.0.0.9", "worker", "ready", "active", {}, "20.10.24"),
    ]
    facts = _facts({"m1": "locked", "w1": "active", "w2": "inactive"}, members)
    findings = status_findings(site, facts, plan_swarm(site, facts))
    doc = status_document(site, facts, {"m1": "2027-01-01T00:00:00Z"}, findings)
    assert set(doc) == {"cluster_id", "autolock", "managers", "nodes", "findings"}
    assert (doc["cluster_id"], doc["autolock"], doc["managers"]) == ("c1", True, 1)
    rows = {n["name"]: n for n in doc["nodes"]}
    assert rows["m1"] == {
        "name": "m1",
        "address": "10.0.0.1",
        "role": "manager",
        "state": "locked",
        "availability": "active",
        "engine": "20.10.24",
        "cert_expires": "2027-01-01T00:00:00Z",
    }
    assert rows["w1"]["state"] == "down" and rows["w2"]["state"] == "not-joined" and rows["old"]["role"] == "worker"
    checks = {(f["node"], f["check"]) for f in doc["findings"]}
    assert {("m1", "swarm.local"), ("w1", "swarm.state"), ("old", "swarm.undeclared"), ("*", "swarm.plan")} <= checks
    json.dumps(doc)  # plain JSON


@pytest.mark.parametrize("state", ["active", "pending"])
def test_converged_status_has_no_findings(state: str) -> None:
    site = _site([["m1", "manager", "core"]])
    facts = _facts(
        {"m1": state}, [MemberFact("id-m1", "m1", "10.0.0.1", "manager", "ready", "active", {"zone": "core"})]
    )
    assert status_findings(site, facts, plan_swarm(site, facts)) == []
