"""Compose service -> Docker Engine API ServiceSpec (pure), the way `docker stack deploy` does it:
services named ``<stack>_<service>``, the stack namespace label, network aliases = the compose
service name, stack-prefixed volumes.

References to swarm objects stay by NAME here (network ``Target``, ``SecretName``,
``ConfigName``); the executor fills in IDs just before it sends a spec, and the planner maps the
observed IDs back to names, so plans compare like with like.
"""

from __future__ import annotations

from typing import Any

from tvdeploy.release import units
from tvdeploy.release.stack_model import FileRef, Service, Stack, UpdateConfig

NAMESPACE = "com.docker.stack.namespace"
SERVICE_LABEL = "io.tvdeploy.service"


def service_name(stack: str, service: str) -> str:
    return f"{stack}_{service}"


def object_name(stack: str, key: str, definition: Any) -> str:
    """The swarm name of a network, volume, secret or config: its `name`, else stack-prefixed."""
    name = getattr(definition, "name", None) if definition is not None else None
    return str(name) if name else f"{stack}_{key}"


def build_specs(stack: Stack, stack_name: str) -> dict[str, dict[str, Any]]:
    """compose service name -> ServiceSpec (as the API's JSON)."""
    return {name: service_spec(stack, stack_name, name, svc) for name, svc in stack.services.items()}


def service_spec(stack: Stack, ns: str, name: str, svc: Service) -> dict[str, Any]:
    d = svc.deploy
    spec: dict[str, Any] = {
        "Name": service_name(ns, name),
        "Labels": {**d.labels, NAMESPACE: ns, SERVICE_LABEL: name},
        "TaskTemplate": {
            "ContainerSpec": container_spec(stack, ns, svc),
            "Resources": resources(svc),
            "RestartPolicy": {
                "Condition": d.restart_policy.condition,
                "Delay": units.duration_ns(d.restart_policy.delay),
                "MaxAttempts": d.restart_policy.max_attempts,
                "Window": units.duration_ns(d.restart_policy.window),
            },
            "Placement": {"Constraints": list(d.placement.constraints)},
            "Networks": networks(stack, ns, name, svc),
        },
        "Mode": {"Global": {}} if d.mode == "global" else {"Replicated": {"Replicas": d.replicas}},
        "UpdateConfig": update_config(d.update_config),
        "RollbackConfig": update_config(d.rollback_config),
        "EndpointSpec": {"Mode": d.endpoint_mode, "Ports": [
            {"Protocol": p.protocol, "TargetPort": p.target, "PublishMode": p.mode,
             **({"PublishedPort": p.published} if p.published else {})}
            for p in svc.ports]},
    }
    if d.placement.max_replicas_per_node:
        spec["TaskTemplate"]["Placement"]["MaxReplicas"] = d.placement.max_replicas_per_node
    return spec


def container_spec(stack: Stack, ns: str, svc: Service) -> dict[str, Any]:
    c: dict[str, Any] = {
        "Image": svc.image,
        "Labels": {**svc.labels, NAMESPACE: ns},
        "ReadOnly": svc.read_only,
        "Mounts": [mount(ns, stack, m) for m in svc.volumes],
        "Secrets": [file_ref(r, "Secret", object_name(ns, r.source, stack.secrets.get(r.source))) for r in svc.secrets],
        "Configs": [file_ref(r, "Config", object_name(ns, r.source, stack.configs.get(r.source))) for r in svc.configs],
    }
    env = svc.environment
    pairs = [f"{k}={v}" for k, v in env.items()] if isinstance(env, dict) else list(env)
    if pairs:
        c["Env"] = sorted(pairs)
    if svc.user:
        c["User"] = svc.user
    if svc.cap_drop:
        c["CapabilityDrop"] = list(svc.cap_drop)
    if svc.cap_add:
        c["CapabilityAdd"] = list(svc.cap_add)
    for key, field in (("Args", svc.command), ("Command", svc.entrypoint)):
        if field is not None:
            c[key] = [field] if isinstance(field, str) else list(field)
    if svc.working_dir:
        c["Dir"] = svc.working_dir
    if svc.hostname:
        c["Hostname"] = svc.hostname
    if svc.dns:
        c["DNSConfig"] = {"Nameservers": [svc.dns] if isinstance(svc.dns, str) else list(svc.dns)}
    if svc.stop_grace_period:
        c["StopGracePeriod"] = units.duration_ns(svc.stop_grace_period)
    if svc.healthcheck is not None:
        c["Healthcheck"] = healthcheck(svc)
    if svc.ulimits:
        c["Ulimits"] = [{"Name": k, "Soft": v, "Hard": v} if isinstance(v, int) else
                        {"Name": k, "Soft": v.get("soft", 0), "Hard": v.get("hard", 0)}
                        for k, v in sorted(svc.ulimits.items())]
    return c


def healthcheck(svc: Service) -> dict[str, Any]:
    h = svc.healthcheck
    assert h is not None
    if h.disable:
        return {"Test": ["NONE"]}
    test = h.test if isinstance(h.test, list) else ["CMD-SHELL", h.test]
    return {"Test": list(test), "Interval": units.duration_ns(h.interval), "Timeout": units.duration_ns(h.timeout),
            "Retries": h.retries, "StartPeriod": units.duration_ns(h.start_period)}


def mount(ns: str, stack: Stack, m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
    if m.type == "volume":
        definition = stack.volumes.get(m.source or "")
        out["Source"] = object_name(ns, m.source or "", definition)
        labels = {NAMESPACE: ns, **(definition.labels if definition else {})}
        out["VolumeOptions"] = {"Labels": labels}
    elif m.type == "bind":
        out["Source"] = m.source
    return out


def file_ref(ref: FileRef, kind: str, name: str) -> dict[str, Any]:
    return {"File": {"Name": ref.target, "UID": ref.uid, "GID": ref.gid, "Mode": ref.mode}, f"{kind}Name": name}


def networks(stack: Stack, ns: str, name: str, svc: Service) -> list[dict[str, Any]]:
    attach = svc.networks if isinstance(svc.networks, dict) else {n: None for n in svc.networks}
    out = []
    for key, opts in attach.items():
        aliases = sorted({name, *(opts.aliases if opts else [])})
        out.append({"Target": object_name(ns, key, stack.networks.get(key)), "Aliases": aliases})
    return sorted(out, key=lambda n: n["Target"])


def resources(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, lim in (("Limits", svc.deploy.resources.limits), ("Reservations", svc.deploy.resources.reservations)):
        part: dict[str, Any] = {}
        if lim.cpus is not None:
            part["NanoCPUs"] = units.nano_cpus(lim.cpus)
        if lim.memory is not None:
            part["MemoryBytes"] = units.size_bytes(lim.memory)
        if lim.pids is not None and key == "Limits":
            part["Pids"] = lim.pids
        if part:
            out[key] = part
    return out


def update_config(u: UpdateConfig) -> dict[str, Any]:
    return {"Parallelism": u.parallelism, "Delay": units.duration_ns(u.delay), "FailureAction": u.failure_action,
            "Monitor": units.duration_ns(u.monitor), "MaxFailureRatio": u.max_failure_ratio, "Order": u.order}
