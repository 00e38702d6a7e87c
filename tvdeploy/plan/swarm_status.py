"""What ``swarm status`` judges and shows (pure): findings an operator should look at now, from the
observed swarm facts and the swarm plan, and the status document of ``swarm status --json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvdeploy.facts.swarm_model import MemberFact, SwarmFacts
from tvdeploy.plan.preflight import Finding

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.plan.swarm import SwarmPlan


def declared_name(site: Site, member: MemberFact) -> str:
    """The site-file name of a swarm member (by hostname or address), else its own name."""
    for node in site.nodes:
        if member.hostname == node.name or member.address == str(node.address):
            return str(node.name)
    return member.hostname or member.node_id


def status_findings(site: Site, facts: SwarmFacts, plan: SwarmPlan) -> list[Finding]:
    """What an operator should look at now: nodes not ready, locked or unreachable managers,
    members the site file does not declare, the planner's problems and pending changes."""
    out: list[Finding] = []
    for name, local in sorted(facts.local.items()):
        if local.local_state in ("locked", "unreachable", "error"):
            hint = "; run tvdeploy swarm unlock" if local.local_state == "locked" else ""
            out.append(Finding(name, "swarm.local", "error", f"swarm state {local.local_state}{hint}"))
    declared = {n.name for n in site.nodes}
    for m in facts.members:
        name = declared_name(site, m)
        if m.state != "ready":
            out.append(Finding(name, "swarm.state", "error", f"node is {m.state}"))
        if m.role == "manager" and not m.reachable:
            out.append(Finding(name, "swarm.manager", "error", "manager is unreachable by the others"))
        if name not in declared:
            out.append(
                Finding(
                    name,
                    "swarm.undeclared",
                    "warning",
                    "in the swarm but not in the site file; swarm bootstrap would remove it",
                )
            )
    for problem in plan.problems:
        out.append(Finding("*", "swarm.plan", "error", problem))
    if plan.steps:
        out.append(
            Finding("*", "swarm.plan", "warning", f"{len(plan.steps)} pending change(s): see tvdeploy swarm plan")
        )
    return out


def status_document(
    site: Site, facts: SwarmFacts, cert_expires: dict[str, str | None], findings: list[Finding]
) -> dict[str, Any]:
    """`swarm status --json`: swarm members first (by site-file name), then declared nodes that
    are not members yet (state "not-joined" or their local state)."""
    nodes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in sorted(facts.members, key=lambda m: (m.role != "manager", declared_name(site, m))):
        name = declared_name(site, m)
        seen.add(name)
        # The managers' view lags: a manager restarted locked still reads "ready" there.
        local = facts.local.get(name)
        state = local.local_state if local is not None and local.local_state == "locked" else m.state
        nodes.append(
            {
                "name": name,
                "address": m.address,
                "role": m.role,
                "state": state,
                "availability": m.availability,
                "engine": m.engine or None,
                "cert_expires": cert_expires.get(name),
            }
        )
    for node in site.nodes:
        if node.name in seen:
            continue
        local = facts.local.get(node.name)
        state = local.local_state if local is not None else "unknown"
        nodes.append(
            {
                "name": node.name,
                "address": str(node.address),
                "role": node.role,
                "state": "not-joined" if state == "inactive" else state,
                "availability": None,
                "engine": None,
                "cert_expires": cert_expires.get(node.name),
            }
        )
    return {
        "cluster_id": facts.cluster_id,
        "autolock": bool(facts.autolock),
        "managers": sum(1 for m in facts.members if m.role == "manager"),
        "nodes": nodes,
        "findings": [f.as_dict() for f in findings],
    }
