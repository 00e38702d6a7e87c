"""Engine and swarm facts for the policy checks, from each node's Docker API over mutual TLS.

Per node: ``/info``, ``/version``, every container (``all=True``: created and stopped ones too,
which a check must see even when they cannot start) inspected, the images. From one manager:
``/swarm``, ``/nodes``, the overlay networks (ingress included) and every service's live spec.
The converters turn a service spec or a standalone container into the compose form the stack
rules read, so one rule checks the rendered stack, the live services and stray containers alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tvdeploy.policy.model import EngineFacts, StackFacts, SwarmFacts

log = logging.getLogger(__name__)

SERVICE_LABEL = "com.docker.swarm.service.id"


def engine_facts(node: str, client: Any) -> EngineFacts:
    api = client.api
    containers = tuple(api.inspect_container(c["Id"]) for c in api.containers(all=True))
    bridge: dict[str, str] = {}
    try:
        bridge = dict(api.inspect_network("bridge").get("Options") or {})
    except Exception:  # noqa: BLE001 - no default bridge (bridge: none) is a fine answer
        log.debug("no default bridge on %s", node)
    return EngineFacts(node, api.info(), api.version(), containers, tuple(api.images()), bridge)


def _env(items: Any) -> dict[str, str]:
    return dict(str(e).partition("=")[::2] for e in items or [])


def _limits(nano_cpus: Any, memory: Any, pids: Any) -> dict[str, Any]:
    return {k: v for k, v in (("cpus", nano_cpus / 1e9 if nano_cpus else None), ("memory", memory or None),
                              ("pids", pids if pids and pids > 0 else None)) if v is not None}


def service_to_compose(svc: Mapping[str, Any], net_names: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    spec = svc.get("Spec") or {}
    tt = spec.get("TaskTemplate") or {}
    cs = tt.get("ContainerSpec") or {}
    res = (tt.get("Resources") or {}).get("Limits") or {}
    rp = tt.get("RestartPolicy") or {}
    out: dict[str, Any] = {
        "image": cs.get("Image", ""), "user": cs.get("User", ""), "read_only": bool(cs.get("ReadOnly")),
        "cap_add": list(cs.get("CapabilityAdd") or []), "cap_drop": list(cs.get("CapabilityDrop") or []),
        "environment": _env(cs.get("Env")),
        "volumes": [{"type": m.get("Type"), "source": m.get("Source"), "target": m.get("Target"),
                     "read_only": bool(m.get("ReadOnly")),
                     "bind": {"propagation": (m.get("BindOptions") or {}).get("Propagation", "")}}
                    for m in cs.get("Mounts") or []],
        "networks": [net_names.get(n.get("Target", ""), n.get("Target", "")) for n in tt.get("Networks") or []],
        "ports": [{"target": p.get("TargetPort"), "published": p.get("PublishedPort"),
                   "protocol": p.get("Protocol"), "mode": p.get("PublishMode")}
                  for p in (spec.get("EndpointSpec") or {}).get("Ports") or []],
        "deploy": {"resources": {"limits": _limits(res.get("NanoCPUs"), res.get("MemoryBytes"), res.get("Pids"))},
                   "restart_policy": {"condition": rp.get("Condition", "any"), "max_attempts": rp.get("MaxAttempts")}},
    }
    if cs.get("Healthcheck"):
        out["healthcheck"] = {"test": cs["Healthcheck"].get("Test")}
    if cs.get("Ulimits"):
        out["ulimits"] = {u["Name"]: {"soft": u.get("Soft"), "hard": u.get("Hard")} for u in cs["Ulimits"]}
    return str(spec.get("Name", svc.get("ID", ""))), out


def container_to_compose(c: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    hc = c.get("HostConfig") or {}
    cfg = c.get("Config") or {}
    rp = hc.get("RestartPolicy") or {}
    out: dict[str, Any] = {
        "image": cfg.get("Image", ""), "user": cfg.get("User", ""), "read_only": bool(hc.get("ReadonlyRootfs")),
        "cap_add": list(hc.get("CapAdd") or []), "cap_drop": list(hc.get("CapDrop") or []),
        "environment": _env(cfg.get("Env")),
        "volumes": [{"type": m.get("Type"), "source": m.get("Source"), "target": m.get("Destination"),
                     "read_only": not m.get("RW", True), "bind": {"propagation": m.get("Propagation", "")}}
                    for m in c.get("Mounts") or []],
        "ports": [{"target": k.split("/")[0], "published": b.get("HostPort")}
                  for k, binds in (hc.get("PortBindings") or {}).items() for b in binds or [] if b.get("HostPort")],
        "deploy": {"resources": {"limits": _limits(hc.get("NanoCpus"), hc.get("Memory"), hc.get("PidsLimit"))},
                   "restart_policy": {"condition": rp.get("Name") or "none",
                                      "max_attempts": rp.get("MaximumRetryCount")}},
    }
    if cfg.get("Healthcheck"):
        out["healthcheck"] = {"test": cfg["Healthcheck"].get("Test")}
    if hc.get("Ulimits"):
        out["ulimits"] = {u["Name"]: {"soft": u.get("Soft"), "hard": u.get("Hard")} for u in hc["Ulimits"]}
    return str(c.get("Name", "")).lstrip("/"), out


def standalone_stack(eng: EngineFacts) -> StackFacts | None:
    """A node's containers that no swarm service owns, as a compose mapping (None: none)."""
    mine = [c for c in eng.containers if SERVICE_LABEL not in ((c.get("Config") or {}).get("Labels") or {})]
    if not mine:
        return None
    services = dict(container_to_compose(c) for c in mine)
    return StackFacts({"services": {f"container {k}": v for k, v in services.items()}}, "container",
                      f"node {eng.node}", eng.node)


def with_image_healthchecks(live: StackFacts, engines: Mapping[str, EngineFacts]) -> StackFacts:
    """A service spec without a healthcheck still gets its image's HEALTHCHECK: take it from a
    task container of the service (its Config holds the merged image config) on any node."""
    found: dict[str, Any] = {}
    for eng in engines.values():
        for c in eng.containers:
            cfg = c.get("Config") or {}
            name = (cfg.get("Labels") or {}).get("com.docker.swarm.service.name")
            if name and cfg.get("Healthcheck"):
                found.setdefault(name, cfg["Healthcheck"].get("Test"))
    services = {n: ({**svc, "healthcheck": {"test": found[n]}} if "healthcheck" not in svc and n in found else svc)
                for n, svc in (live.compose.get("services") or {}).items()}
    return StackFacts({**live.compose, "services": services}, live.kind, live.source, live.node)


def _ca_expiry(pem: str) -> datetime | None:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
    except (ValueError, TypeError):
        return None


def swarm_facts(manager: Any, now: datetime) -> tuple[SwarmFacts, StackFacts]:
    """The swarm as one manager sees it, and every service's live spec."""
    api = manager.api
    swarm = api.inspect_swarm()
    networks = tuple(n for n in api.networks() if n.get("Driver") == "overlay")
    names = {n["Id"]: n["Name"] for n in api.networks()}
    services = dict(service_to_compose(s, names) for s in api.services())
    expires = _ca_expiry(str((swarm.get("TLSInfo") or {}).get("TrustRoot") or ""))
    facts = SwarmFacts(swarm, tuple(api.nodes()), networks,
                       expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else None,
                       int((expires - now).total_seconds() // 86400) if expires else None)
    return facts, StackFacts({"services": services}, "live", "swarm")
