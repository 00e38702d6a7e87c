"""Swarm planner: (site, swarm facts) -> ordered steps that keep quorum at every step.

Order: unlock locked managers; init on the first manager when no swarm exists; join managers one
at a time, then workers; promote; labels; swarm settings; networks; then demotions and removals,
one manager at a time and only while the managers that remain can still form a quorum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tvdeploy.config.site import Node, Site
from tvdeploy.facts.swarm_model import MemberFact, SwarmFacts

DEFAULT_NETWORKS = ("tv-frontend", "tv-backend", "tv-data")


@dataclass(frozen=True)
class Step:
    kind: str
    node: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.detail.items()))
        target = f" {self.node}" if self.node else ""
        return f"{self.kind}{target}" + (f" ({extra})" if extra else "")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, **({"detail": self.detail} if self.detail else {})}


@dataclass(frozen=True)
class SwarmPlan:
    steps: list[Step]
    problems: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.steps)


def quorum(managers: int) -> int:
    return managers // 2 + 1


def desired_labels(node: Node) -> dict[str, str]:
    return {"zone": node.zone, **node.labels}


def stack_networks(site: Site) -> list[str]:
    names = site.stack.values.get("networks") if isinstance(site.stack.values, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    return list(DEFAULT_NETWORKS)


def _member_for(node: Node, members: list[MemberFact]) -> MemberFact | None:
    for m in members:
        if m.hostname == node.name or m.address == str(node.address):
            return m
    return None


def plan_swarm(site: Site, facts: SwarmFacts) -> SwarmPlan:
    steps: list[Step] = []
    problems: list[str] = []
    members = list(facts.members)
    in_swarm = facts.cluster_id is not None

    for node in site.managers:
        if facts.local.get(node.name) and facts.local[node.name].local_state == "locked":
            steps.append(Step("unlock", node.name))

    unreachable = [n.name for n in site.nodes if facts.local.get(n.name, _UNREACHABLE).local_state == "unreachable"]
    if unreachable:
        problems.append("unreachable over the TLS API: " + ", ".join(unreachable))

    if not in_swarm:
        orphaned = _in_swarm_without_cluster_view(site, facts)
        if orphaned:
            # A swarm exists but no manager answered for it: planning an init now would split
            # the cluster. Unlocking is the one thing that can be done from here.
            if steps:
                problems.append(
                    "no unlocked manager can answer for the cluster: run the unlock, then plan again for the rest"
                )
            else:
                problems.append("in a swarm but no manager of this site answers for it: " + ", ".join(orphaned))
            return SwarmPlan(steps, problems)
        first = site.managers[0]
        steps.append(
            Step(
                "init",
                first.name,
                {
                    "advertise": str(first.address),
                    "autolock": site.swarm.autolock,
                    "cert_expiry_hours": site.swarm.cert_expiry_hours,
                    "data_path_port": site.swarm.data_path_port,
                },
            )
        )

    joined: dict[str, MemberFact | None] = {n.name: _member_for(n, members) for n in site.nodes}
    if not in_swarm:
        joined[site.managers[0].name] = None
        pending_joins = [n for n in site.nodes if n.name != site.managers[0].name]
    else:
        pending_joins = [n for n in site.nodes if joined[n.name] is None]
    for node in sorted(pending_joins, key=lambda n: n.role != "manager"):
        steps.append(
            Step("join-manager" if node.role == "manager" else "join-worker", node.name, {"address": str(node.address)})
        )

    for node in site.nodes:
        member = joined.get(node.name)
        if member is not None and node.role == "manager" and member.role == "worker":
            steps.append(Step("promote", node.name))

    for node in site.nodes:
        member = joined.get(node.name)
        want = desired_labels(node)
        have = member.labels if member is not None else {}
        if member is None or any(have.get(k) != v for k, v in want.items()):
            steps.append(Step("label", node.name, {"labels": want}))
        if member is not None and member.availability != "active":
            steps.append(Step("activate", node.name))

    if in_swarm:
        if facts.autolock is not None and facts.autolock != site.swarm.autolock:
            steps.append(Step("autolock", None, {"enabled": site.swarm.autolock}))
        if facts.autolock and site.swarm.autolock and facts.escrowed is False:
            # An interrupted bootstrap (after init, before the escrow) or a lost escrow file.
            steps.append(Step("escrow", None))
        if facts.cert_expiry_hours is not None and facts.cert_expiry_hours != site.swarm.cert_expiry_hours:
            steps.append(Step("cert-expiry", None, {"hours": site.swarm.cert_expiry_hours}))

    for name in stack_networks(site):
        encrypted = site.swarm.encrypted_networks
        if name not in facts.networks:
            steps.append(Step("network-create", None, {"name": name, "encrypted": encrypted}))
        elif facts.networks[name] != encrypted:
            problems.append(
                f"network {name}: encrypted={facts.networks[name]} but swarm.encrypted_networks={encrypted}; "
                "a network in use cannot be changed in place: remove the stack, then the network"
            )

    steps.extend(_shrink_steps(site, members, joined, problems))
    return SwarmPlan(steps, problems)


_SWARM_STATES = ("active", "locked", "pending", "error")


def _in_swarm_without_cluster_view(site: Site, facts: SwarmFacts) -> list[str]:
    out = []
    for node in site.nodes:
        state = facts.local.get(node.name, _UNREACHABLE).local_state
        if state in _SWARM_STATES:
            out.append(f"{node.name} ({state})")
    return out


_UNREACHABLE_STATE = "unreachable"


class _Unreachable:
    local_state = _UNREACHABLE_STATE


_UNREACHABLE: Any = _Unreachable()


def _shrink_steps(
    site: Site, members: list[MemberFact], joined: dict[str, MemberFact | None], problems: list[str]
) -> list[Step]:
    """Demotions then removals, one manager at a time, never below quorum."""
    steps: list[Step] = []
    declared_ids = {m.node_id for m in joined.values() if m is not None}
    extra = [m for m in members if m.node_id not in declared_ids]
    managers = [m for m in members if m.role == "manager"]
    # Managers after the joins and promotions planned before this point (assumed reachable).
    added = 0
    for n in site.nodes:
        member = joined.get(n.name)
        if n.role == "manager" and (member is None or member.role == "worker"):
            added += 1
    total = len(managers) + added
    reachable = sum(1 for m in managers if m.reachable and m.state == "ready") + added

    def lose_manager(name: str) -> bool:
        nonlocal total, reachable
        if reachable - 1 < quorum(total - 1):
            problems.append(
                f"{name}: leaving it would drop the managers below quorum ({reachable - 1} reachable of "
                f"{total - 1}); bring the unreachable managers back first"
            )
            return False
        total -= 1
        reachable -= 1
        return True

    for node in site.nodes:
        member = joined.get(node.name)
        if member is not None and node.role == "worker" and member.role == "manager" and lose_manager(node.name):
            steps.append(Step("demote", node.name))

    for m in sorted(extra, key=lambda m: m.role != "worker"):
        label = m.hostname or m.node_id
        if m.role == "manager":
            if not lose_manager(label):
                continue
            steps.append(Step("demote", label, {"node_id": m.node_id}))
        if m.state == "ready" and m.availability != "drain":
            steps.append(Step("drain", label, {"node_id": m.node_id}))
        steps.append(Step("leave", label, {"node_id": m.node_id, "address": m.address}))
        steps.append(Step("remove", label, {"node_id": m.node_id}))
    return steps
