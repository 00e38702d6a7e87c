"""Engine rules (TVD-3xx): every node's Docker API: every container (stopped and created ones
too, standalone and swarm tasks), images, version. A standalone container's other settings are
checked by the stack rules (the facts turn containers into compose-form services)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, EngineFacts, PolicyFacts, failed, not_applicable, passed
from tvdeploy.policy.registry import rule


def engines(facts: PolicyFacts) -> Iterator[EngineFacts]:
    engines = facts.engines or {}
    yield from (engines[n] for n in sorted(engines))


def containers(facts: PolicyFacts) -> Iterator[tuple[EngineFacts, str, Mapping[str, Any]]]:
    for eng in engines(facts):
        for c in eng.containers:
            yield eng, "container " + str(c.get("Name", "")).lstrip("/"), c


def _hc(c: Mapping[str, Any]) -> Mapping[str, Any]:
    return c.get("HostConfig") or {}


def _sec_opts(c: Mapping[str, Any]) -> list[str]:
    return [str(o).replace(":", "=", 1) for o in _hc(c).get("SecurityOpt") or []]


def _container_rule(id: str, title: str, severity: str, cis: str, remediation: str,
                    bad: Callable[[Mapping[str, Any]], str | None]) -> None:
    def check(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
        for eng, obj, c in containers(facts):
            ev = bad(c)
            state = (c.get("State") or {}).get("Status", "")
            yield (failed(obj, f"{title.lower()} violated ({state})", ev, eng.node) if ev
                   else passed(obj, "", eng.node))
    rule(id, title, "engine", severity, cis=(cis,), remediation=remediation)(check)


def _mode(key: str, value: str) -> Callable[[Mapping[str, Any]], str | None]:
    return lambda c: f"HostConfig.{key}: {value}" if str(_hc(c).get(key) or "") == value else None


_container_rule("TVD-301", "No privileged container", "critical", "5.5",
                "Remove the container (docker rm); run workloads as swarm services.",
                lambda c: "HostConfig.Privileged: true" if _hc(c).get("Privileged") else None)
_container_rule("TVD-302", "No container shares the host's PID namespace", "high", "5.16",
                "Remove the container; never use --pid host.", _mode("PidMode", "host"))
_container_rule("TVD-303", "No container shares the host's IPC namespace", "high", "5.17",
                "Remove the container; never use --ipc host.", _mode("IpcMode", "host"))
_container_rule("TVD-304", "No host device is exposed to a container", "high", "5.18",
                "Remove the container or its --device options.",
                lambda c: f"HostConfig.Devices: {[d.get('PathOnHost') for d in _hc(c).get('Devices') or []]}"
                if _hc(c).get("Devices") else None)
_container_rule("TVD-305", "No container shares the host's UTS namespace", "medium", "5.21",
                "Remove the container; never use --uts host.", _mode("UTSMode", "host"))
_container_rule("TVD-306", "Containers use the default cgroup", "medium", "5.25",
                "Remove --cgroup-parent from the container.",
                lambda c: f"HostConfig.CgroupParent: {_hc(c)['CgroupParent']}" if _hc(c).get("CgroupParent")
                else None)
_container_rule("TVD-307", "No container shares the host's user namespace", "high", "5.31",
                "Remove the container; never use --userns host.", _mode("UsernsMode", "host"))
_container_rule("TVD-308", "No container uses the host network", "critical", "5.10",
                "Remove the container; attach workloads to overlay networks.", _mode("NetworkMode", "host"))
_container_rule("TVD-309", "No container on the default bridge docker0", "low", "5.30",
                "Remove the standalone container; services use overlay networks.",
                lambda c: f"HostConfig.NetworkMode: {_hc(c).get('NetworkMode')}"
                if _hc(c).get("NetworkMode") in ("default", "bridge") else None)
_container_rule("TVD-312", "Default seccomp profile is not disabled", "high", "5.22",
                "Remove --security-opt seccomp=unconfined.",
                lambda c: "HostConfig.SecurityOpt: seccomp=unconfined"
                if "seccomp=unconfined" in _sec_opts(c) else None)


def _security_options(eng: EngineFacts) -> str:
    return " ".join(str(o) for o in eng.info.get("SecurityOptions") or [])


@rule("TVD-310", "AppArmor profile is applied", "engine", "medium", cis=("5.2",),
      remediation="Run containers with the default (docker-default) or a site AppArmor profile.")
def apparmor(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng, obj, c in containers(facts):
        if "apparmor" not in _security_options(eng):
            yield not_applicable(obj, "AppArmor is not enabled on this node's kernel", eng.node)
        elif c.get("AppArmorProfile") in ("unconfined", "") and not _hc(c).get("Privileged"):
            yield failed(obj, "no AppArmor profile", f"AppArmorProfile: {c.get('AppArmorProfile')!r}", eng.node)
        else:
            yield passed(obj, f"AppArmorProfile: {c.get('AppArmorProfile')}", eng.node)


@rule("TVD-311", "SELinux options are set", "engine", "medium", cis=("5.3",),
      remediation="Enable SELinux in the daemon (selinux-enabled) and keep container labels.")
def selinux(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng, obj, c in containers(facts):
        if "selinux" not in _security_options(eng):
            yield not_applicable(obj, "SELinux is not enabled on this node", eng.node)
        elif "label=disable" in _sec_opts(c):
            yield failed(obj, "SELinux labeling disabled", "SecurityOpt: label=disable", eng.node)
        else:
            yield passed(obj, "", eng.node)


@rule("TVD-313", "Containers cannot acquire new privileges", "engine", "medium", cis=("5.26",),
      remediation='Set "no-new-privileges": true in daemon.json (services cannot set it before API 1.44).',
      needs=("engines",))
def no_new_privileges(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng, obj, c in containers(facts):
        host = (facts.hosts or {}).get(eng.node)
        daemon_nnp = bool(host and (host.daemon_json or {}).get("no-new-privileges"))
        if daemon_nnp or any(o.startswith("no-new-privileges") and not o.endswith("false") for o in _sec_opts(c)):
            yield passed(obj, "no-new-privileges", eng.node)
        else:
            yield failed(obj, "may acquire new privileges", "SecurityOpt: no no-new-privileges; daemon.json: "
                         "no-new-privileges not true", eng.node)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split("+")[0].split("-")[0].split("."):
        parts.append(int(p) if p.isdigit() else 0)
    return tuple(parts)


@rule("TVD-320", "Docker Engine is at least the site's minimum version", "engine", "low", cis=("1.2.2",),
      remediation="Upgrade the Docker Engine on the node (from the site's offline package mirror).",
      params={"min_version": "20.10.24"})
def engine_version(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        v = str(eng.version.get("Version") or eng.info.get("ServerVersion") or "")
        ev = f"Version: {v} (minimum {params['min_version']})"
        yield (passed(f"node {eng.node}", ev, eng.node) if _version(v) >= _version(str(params["min_version"]))
               else failed(f"node {eng.node}", "engine older than the site's minimum", ev, eng.node))


@rule("TVD-321", "No image sprawl", "engine", "low", cis=("6.1",),
      remediation="Remove images no container uses (docker image prune -a after a rollout).",
      params={"max_unused": 40})
def image_sprawl(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        used = {c.get("Image") for c in eng.containers}
        unused = [i for i in eng.images if i.get("Id") not in used]
        ev = f"{len(eng.images)} images, {len(unused)} not used by any container (max {params['max_unused']})"
        yield (failed(f"node {eng.node}", "too many unused images", ev, eng.node)
               if len(unused) > int(params["max_unused"]) else passed(f"node {eng.node}", ev, eng.node))


@rule("TVD-322", "No container sprawl", "engine", "low", cis=("6.2",),
      remediation="Remove stopped containers (docker container prune).", params={"max_stopped": 25})
def container_sprawl(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        stopped = [c for c in eng.containers if (c.get("State") or {}).get("Status") != "running"]
        ev = f"{len(eng.containers)} containers, {len(stopped)} not running (max {params['max_stopped']})"
        yield (failed(f"node {eng.node}", "too many stopped containers", ev, eng.node)
               if len(stopped) > int(params["max_stopped"]) else passed(f"node {eng.node}", ev, eng.node))


def _swarm_active(eng: EngineFacts) -> bool:
    return (eng.info.get("Swarm") or {}).get("LocalNodeState") in ("active", "locked", "pending")


@rule("TVD-323", "Swarm mode (accepted exception on a swarm site)", "engine", "info", cis=("5.1",),
      remediation="None: a swarm site needs swarm mode.")
def swarm_mode(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        yield not_applicable(f"node {eng.node}", "swarm site: swarm mode is required (accepted exception)",
                             eng.node)


@rule("TVD-324", "Live restore (not applicable in swarm mode)", "engine", "info", cis=("2.15",),
      remediation="None on a swarm node: dockerd refuses live-restore in swarm mode.")
def live_restore(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        obj = f"node {eng.node}"
        if _swarm_active(eng):
            yield not_applicable(obj, "live-restore is incompatible with swarm mode (dockerd refuses it)", eng.node)
        elif eng.info.get("LiveRestoreEnabled"):
            yield passed(obj, "LiveRestoreEnabled: true", eng.node)
        else:
            yield failed(obj, "live restore is off on a node outside the swarm", "LiveRestoreEnabled: false",
                         eng.node)


@rule("TVD-325", "Published ports bound to one interface (not possible in swarm)", "engine", "info",
      cis=("5.14",), remediation="None: swarm publishes on every interface (moby#26696); firewall the "
      "nodes' other interfaces instead.")
def host_interface(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for eng in engines(facts):
        yield not_applicable(f"node {eng.node}", "swarm publishes ports on 0.0.0.0; a HostIP is rejected or "
                             "dropped (moby#26696)", eng.node)
