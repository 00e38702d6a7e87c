"""Observe the swarm through each node's mutual-TLS Docker API (read only)."""

from __future__ import annotations

import logging
from typing import Any

from tvdeploy.facts.swarm_model import LocalSwarmFact, MemberFact, SwarmFacts

log = logging.getLogger(__name__)

NS_PER_HOUR = 3600 * 10**9


def local_fact(client: Any) -> LocalSwarmFact:
    if client is None:
        return LocalSwarmFact("unreachable")
    try:
        info = client.info()
    except Exception as exc:  # noqa: BLE001 - any API failure means "not reachable now"
        log.debug("docker info failed: %s", exc)
        return LocalSwarmFact("unreachable")
    swarm = info.get("Swarm") or {}
    cluster = swarm.get("Cluster") or {}
    return LocalSwarmFact(
        local_state=str(swarm.get("LocalNodeState") or "inactive"),
        cluster_id=cluster.get("ID") or None,
        node_id=swarm.get("NodeID") or None,
        control_available=bool(swarm.get("ControlAvailable")),
    )


def member_fact(attrs: dict[str, Any]) -> MemberFact:
    spec = attrs.get("Spec") or {}
    desc = attrs.get("Description") or {}
    status = attrs.get("Status") or {}
    manager = attrs.get("ManagerStatus") or {}
    address = status.get("Addr") or ""
    if manager.get("Addr") and (not address or address == "0.0.0.0"):
        address = str(manager["Addr"]).rsplit(":", 1)[0]
    return MemberFact(
        node_id=attrs.get("ID", ""),
        hostname=desc.get("Hostname", ""),
        address=address,
        role=spec.get("Role", "worker"),
        state=status.get("State", "unknown"),
        availability=spec.get("Availability", "active"),
        labels=dict(spec.get("Labels") or {}),
        engine=(desc.get("Engine") or {}).get("EngineVersion", ""),
        leader=bool(manager.get("Leader")),
        reachable=manager.get("Reachability", "reachable") == "reachable",
    )


def pick_manager(site: Any, clients: dict[str, Any], local: dict[str, LocalSwarmFact]) -> Any | None:
    """A client of a declared manager whose swarm is active and can answer cluster calls
    (as its own docker info said when *local* was read)."""
    for node in site.managers:
        client = clients.get(node.name)
        fact = local.get(node.name)
        if client is not None and fact is not None and fact.local_state == "active" and fact.control_available:
            return client
    return None


def local_facts(site: Any, clients: dict[str, Any]) -> dict[str, LocalSwarmFact]:
    """Every declared node's own view, asked in parallel (one TLS handshake + docker info each)."""
    from concurrent.futures import ThreadPoolExecutor

    names = [n.name for n in site.nodes]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        return dict(zip(names, pool.map(lambda n: local_fact(clients.get(n)), names), strict=True))


def gather_swarm_facts(
    site: Any, clients: dict[str, Any], fallback: dict[str, LocalSwarmFact] | None = None
) -> SwarmFacts:
    """*fallback*: a node's own view read another way (docker info over SSH, from host facts),
    used when its TLS API does not answer yet (before `tls apply`)."""
    local = local_facts(site, clients)
    for name, fact in (fallback or {}).items():
        if local.get(name, fact).local_state == "unreachable":
            local[name] = fact
    manager = pick_manager(site, clients, local)
    if manager is None:
        return SwarmFacts(local=local)
    swarm = manager.api.inspect_swarm()
    spec = swarm.get("Spec") or {}
    members = [member_fact(n) for n in manager.api.nodes()]
    networks: dict[str, bool] = {}
    for net in manager.api.networks(filters={"driver": "overlay"}):
        if net.get("Name") == "ingress" or net.get("Ingress"):
            continue
        networks[net["Name"]] = "encrypted" in (net.get("Options") or {})
    expiry_ns = (spec.get("CAConfig") or {}).get("NodeCertExpiry")
    return SwarmFacts(
        local=local,
        members=members,
        cluster_id=swarm.get("ID"),
        autolock=bool((spec.get("EncryptionConfig") or {}).get("AutoLockManagers")),
        cert_expiry_hours=int(expiry_ns // NS_PER_HOUR) if expiry_ns else None,
        networks=networks,
    )
