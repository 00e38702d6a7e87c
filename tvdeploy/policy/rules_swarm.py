"""Swarm rules (TVD-5xx): the manager's view (``/swarm``, ``/nodes``, ``/networks``), the swarm
root CA's expiry, and the managers' listening sockets from the host facts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, PolicyFacts, failed, passed
from tvdeploy.policy.registry import rule

NS_PER_HOUR = 3600 * 10**9


def _managers(facts: PolicyFacts) -> list[Mapping[str, Any]]:
    assert facts.swarm is not None
    return [n for n in facts.swarm.nodes if (n.get("Spec") or {}).get("Role") == "manager"]


def _name(n: Mapping[str, Any]) -> str:
    return str((n.get("Description") or {}).get("Hostname") or n.get("ID", ""))


@rule("TVD-501", "Manager count gives a quorum that survives a failure", "swarm", "high", cis=("7.1",),
      remediation="Run an odd number of managers: 3 (or 5, 7) spread over zones.", params={"min": 3})
def manager_count(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None:
        return
    managers = [_name(m) for m in _managers(facts)]
    ev = f"{len(managers)} managers: {', '.join(sorted(managers))}"
    if len(managers) < int(params["min"]) or len(managers) % 2 == 0:
        yield failed("swarm", f"{len(managers)} managers: a manager failure loses the quorum"
                     if len(managers) < 3 else "an even manager count adds no fault tolerance", ev)
    else:
        yield passed("swarm", ev)


@rule("TVD-502", "Every manager is reachable (quorum held)", "swarm", "high", cis=("7.1",),
      remediation="Bring the unreachable manager back (or demote and replace it).")
def quorum(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None:
        return
    for m in _managers(facts):
        reach = (m.get("ManagerStatus") or {}).get("Reachability", "unknown")
        obj = f"manager {_name(m)}"
        yield (passed(obj, f"Reachability: {reach}", _name(m)) if reach == "reachable"
               else failed(obj, "manager is not reachable", f"Reachability: {reach}", _name(m)))


@rule("TVD-503", "Managers run in autolock mode", "swarm", "high", cis=("7.5",),
      remediation="tvdeploy swarm bootstrap with swarm.autolock: true (docker swarm update --autolock=true), "
                  "and escrow the unlock key.")
def autolock(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None:
        return
    on = bool(((facts.swarm.swarm.get("Spec") or {}).get("EncryptionConfig") or {}).get("AutoLockManagers"))
    ev = f"EncryptionConfig.AutoLockManagers: {str(on).lower()}"
    yield passed("swarm", ev) if on else failed("swarm", "autolock is off", ev)


@rule("TVD-504", "Node certificates are rotated often enough", "swarm", "medium", cis=("7.7",),
      remediation="Set swarm.cert_expiry_hours (docker swarm update --cert-expiry) to at most the limit.",
      params={"max_hours": 2160})
def node_cert_expiry(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None:
        return
    ns = ((facts.swarm.swarm.get("Spec") or {}).get("CAConfig") or {}).get("NodeCertExpiry") or 0
    hours = int(ns) // NS_PER_HOUR
    ev = f"CAConfig.NodeCertExpiry: {hours} h (max {params['max_hours']} h)"
    yield (passed("swarm", ev) if 0 < hours <= int(params["max_hours"])
           else failed("swarm", "node certificates live too long", ev))


@rule("TVD-505", "CA certificate is rotated before it expires", "swarm", "medium", cis=("7.8",),
      remediation="Rotate the swarm root CA (docker swarm ca --rotate) well before its expiry.", params={"days": 90})
def ca_expiry(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None or facts.swarm.days_left_ca is None:
        return
    ev = f"swarm root CA expires {facts.swarm.ca_expires} ({facts.swarm.days_left_ca} days)"
    yield (failed("swarm root CA", "CA certificate expires soon", ev) if facts.swarm.days_left_ca < int(params["days"])
           else passed("swarm root CA", ev))


@rule("TVD-506", "Overlay networks are encrypted", "swarm", "medium", cis=("7.3",),
      remediation="Recreate the network with --opt encrypted (swarm.encrypted_networks: true); the "
                  "ingress network too.")
def overlay_encrypted(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    if facts.swarm is None:
        return
    for net in sorted(facts.swarm.networks, key=lambda n: str(n.get("Name"))):
        obj = f"network {net.get('Name')}"
        opts = net.get("Options") or {}
        yield (passed(obj, "Options.encrypted") if "encrypted" in opts
               else failed(obj, "overlay network is not encrypted", f"Options: {dict(opts)}"))


@rule("TVD-507", "Swarm management port bound to one interface", "swarm", "medium", cis=("7.2",),
      remediation="Give swarm init/join --listen-addr <node address>:2377 (not 0.0.0.0).",
      needs=("hosts",))
def listen_addr(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for name in sorted(facts.hosts or {}):
        host = (facts.hosts or {})[name]
        addrs = [a for a, p in host.listeners if p == 2377]
        if not addrs:
            continue
        wild = [a for a in addrs if a in ("0.0.0.0", "::")]
        ev = f"listening on {', '.join(f'{a}:2377' for a in addrs)}"
        yield (failed(f"node {name}", "swarm port 2377 listens on every interface", ev, name) if wild
               else passed(f"node {name}", ev, name))
