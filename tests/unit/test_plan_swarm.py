"""Data-driven swarm planner cases: tests/unit/data/plan_swarm/*.json (desired + facts -> steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.config.site import Site
from tvdeploy.facts.swarm_model import LocalSwarmFact, MemberFact, SwarmFacts
from tvdeploy.plan.swarm import plan_swarm, quorum

CASES = sorted((Path(__file__).parent / "data" / "plan_swarm").glob("*.json"))


def _site(nodes: list[list[str]]) -> Site:
    return Site.model_validate(
        {
            "version": 1,
            "site": {"name": "t"},
            "network": {"subnet": "10.0.0.0/24"},
            "nodes": [
                {"name": n, "role": r, "address": f"10.0.0.{i + 1}", "zone": z} for i, (n, r, z) in enumerate(nodes)
            ],
            "ssh": {"known_hosts": "/tmp/kh"},
            "swarm": {"encrypted_networks": False, "publish_mode": "host"},
        }
    )


def _facts(doc: dict) -> SwarmFacts:
    members = []
    for row in doc.get("members", []):
        node_id, host, addr, role, state, avail, labels, *rest = row
        members.append(MemberFact(node_id, host, addr, role, state, avail, labels, reachable=rest[0] if rest else True))
    return SwarmFacts(
        local={k: LocalSwarmFact(v) for k, v in doc["local"].items()},
        members=members,
        cluster_id=doc.get("cluster_id"),
        autolock=doc.get("autolock"),
        cert_expiry_hours=doc.get("cert_expiry_hours"),
        networks=doc.get("networks", {}),
        escrowed=doc.get("escrowed"),
    )


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_plan_case(case: Path) -> None:
    doc = json.loads(case.read_text())
    plan = plan_swarm(_site(doc["site"]["nodes"]), _facts(doc["facts"]))
    assert [[s.kind, s.node] for s in plan.steps] == doc["expected"], doc["description"]
    for fragment in doc.get("problems", []):
        assert any(fragment in p for p in plan.problems), plan.problems
    if "problems" not in doc:
        assert plan.problems == []


def test_every_step_kind_is_covered() -> None:
    kinds = set()
    for case in CASES:
        kinds |= {k for k, _ in json.loads(case.read_text())["expected"]}
    assert kinds >= {
        "init",
        "join-manager",
        "join-worker",
        "promote",
        "demote",
        "label",
        "activate",
        "unlock",
        "autolock",
        "network-create",
        "drain",
        "leave",
        "remove",
        "escrow",
    }


@pytest.mark.parametrize(("managers", "needed"), [(1, 1), (2, 2), (3, 2), (5, 3), (7, 4)])
def test_quorum(managers: int, needed: int) -> None:
    assert quorum(managers) == needed
