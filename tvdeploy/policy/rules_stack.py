"""Stack rules (TVD-1xx): each service of a compose-format mapping, as rendered before a deploy
(kind "rendered"), as the swarm runs it (kind "live", converted from the service specs) or as a
node's standalone containers (kind "container"). The evidence names the key and its value."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, PolicyFacts, StackFacts, failed, passed
from tvdeploy.policy.registry import rule

DIGEST_REF = re.compile(r"(@|^)sha256:[0-9a-f]{64}$")  # by manifest digest, or by image id (node-load)
SECRET_NAME = re.compile(r"(PASS(WORD|WD)?|SECRET|TOKEN|CREDENTIAL|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY)",
                         re.IGNORECASE)
SENSITIVE_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var/lib/docker",
                  "/var/run", "/run", "/root", "/home")
SOCKETS = ("docker.sock", "containerd.sock")


def services(facts: PolicyFacts, kinds: tuple[str, ...] = ("rendered", "live", "container")
             ) -> Iterator[tuple[StackFacts, str, Mapping[str, Any]]]:
    for stack in facts.stacks:
        if stack.kind not in kinds:
            continue
        for name, svc in sorted((stack.compose.get("services") or {}).items()):
            yield stack, str(name), svc if isinstance(svc, Mapping) else {}


def _where(stack: StackFacts) -> str:
    return {"rendered": "rendered stack", "live": "live service spec", "container": "container"}[stack.kind]


def _ok(stack: StackFacts, name: str, evidence: str = "") -> Check:
    return passed(name, evidence, stack.node, stack.source or None)


def _bad(stack: StackFacts, name: str, message: str, evidence: str) -> Check:
    return failed(name, f"{_where(stack)}: {message}", evidence, stack.node, stack.source or None)


def _deploy(svc: Mapping[str, Any], *path: str) -> Any:
    value: Any = svc.get("deploy") or {}
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


@rule("TVD-101", "Images are pinned by digest", "stack", "high", cis=("5.28",),
      remediation="Reference every image as <registry>/<repository>@sha256:<digest> (release manifests do), "
                  "or by image id in node-load mode.")
def image_by_digest(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        image = str(svc.get("image", ""))
        yield (_ok(stack, name, f"image: {image}") if DIGEST_REF.search(image)
               else _bad(stack, name, "image is not pinned by digest", f"image: {image}"))


@rule("TVD-102", "Secrets are never in environment variables", "stack", "high", cis=("7.4",),
      remediation="Move the value into a swarm secret (secrets:) and read it from /run/secrets; "
                  "pass only its path (NAME_FILE) in the environment.")
def secrets_not_in_env(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(str(e).partition("=")[::2] for e in env)
        bad = sorted(k for k, v in env.items()
                     if SECRET_NAME.search(str(k)) and not str(k).upper().endswith("_FILE")
                     and v not in (None, "") and not str(v).startswith("/run/secrets/"))
        # Never print the value: the evidence names the variable only.
        yield (_bad(stack, name, "secret-looking value in an environment variable",
                    "environment: " + ", ".join(bad)) if bad else _ok(stack, name))


@rule("TVD-103", "No service shares the host's network namespace", "stack", "critical", cis=("5.10",),
      remediation="Attach the service to the site's overlay tier networks, never to the network 'host'.")
def no_host_network(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts, ("rendered", "live")):
        nets = svc.get("networks") or []
        names = list(nets) if isinstance(nets, Mapping) else [str(n) for n in nets]
        yield (_bad(stack, name, "attached to the host network", f"networks: {names}")
               if "host" in names else _ok(stack, name, f"networks: {names}"))


@rule("TVD-104", "Capabilities: drop ALL, add only what is allowed", "stack", "high", cis=("5.4",),
      remediation="Set cap_drop: [ALL] and add back only capabilities in the pack's allow list.",
      params={"allowed": ["NET_BIND_SERVICE", "CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE"]})
def capabilities(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    allowed = {str(c).upper().removeprefix("CAP_") for c in params["allowed"]}
    for stack, name, svc in services(facts):
        drop = {str(c).upper().removeprefix("CAP_") for c in svc.get("cap_drop") or []}
        add = sorted({str(c).upper().removeprefix("CAP_") for c in svc.get("cap_add") or []})
        extra = [c for c in add if c not in allowed]
        ev = f"cap_add: {add}; cap_drop: {sorted(drop)}"
        if extra:
            yield _bad(stack, name, f"adds capabilities outside the allow list: {', '.join(extra)}", ev)
        elif "ALL" not in drop:
            yield _bad(stack, name, "does not drop ALL capabilities", ev)
        else:
            yield _ok(stack, name, ev)


def _limit_rule(key: str, label: str) -> Any:
    def check(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
        for stack, name, svc in services(facts):
            value = _deploy(svc, "resources", "limits", key)
            yield (_ok(stack, name, f"deploy.resources.limits.{key}: {value}") if value not in (None, "", 0, "0")
                   else _bad(stack, name, f"no {label} limit", f"deploy.resources.limits.{key}: not set"))
    return check


rule("TVD-105", "Memory is limited", "stack", "high", cis=("5.11",),
     remediation="Set deploy.resources.limits.memory for every service.")(_limit_rule("memory", "memory"))
rule("TVD-106", "CPU is limited", "stack", "medium", cis=("5.12",),
     remediation="Set deploy.resources.limits.cpus for every service.")(_limit_rule("cpus", "CPU"))
rule("TVD-107", "The PIDs cgroup limit is used", "stack", "medium", cis=("5.29",),
     remediation="Set deploy.resources.limits.pids (Engine 20.10+).")(_limit_rule("pids", "PIDs"))


@rule("TVD-108", "Root filesystem is read-only", "stack", "medium", cis=("5.13",),
      remediation="Set read_only: true; give writable paths as tmpfs or volumes.")
def read_only(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        yield (_ok(stack, name, "read_only: true") if svc.get("read_only") is True
               else _bad(stack, name, "root filesystem is writable", f"read_only: {svc.get('read_only')}"))


@rule("TVD-109", "Restart policy is on-failure with at most 5 attempts", "stack", "low", cis=("5.15",),
      remediation="Set deploy.restart_policy: {condition: on-failure, max_attempts: 5}.",
      params={"max_attempts": 5})
def restart_policy(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        pol = _deploy(svc, "restart_policy") or {}
        cond, attempts = pol.get("condition", "any"), pol.get("max_attempts")
        ev = f"deploy.restart_policy: condition={cond}, max_attempts={attempts}"
        if cond != "on-failure" or not isinstance(attempts, int) or not 0 < attempts <= params["max_attempts"]:
            yield _bad(stack, name, f"restarts are not bounded to {params['max_attempts']} on-failure attempts", ev)
        else:
            yield _ok(stack, name, ev)


@rule("TVD-110", "Container health is checked", "stack", "medium", cis=("5.27",),
      remediation="Give the service a healthcheck (or the image a HEALTHCHECK); never disable it.")
def healthcheck(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        hc = svc.get("healthcheck")
        test = hc.get("test") if isinstance(hc, Mapping) else None
        if isinstance(hc, Mapping) and (hc.get("disable") or test in (["NONE"], "NONE")):
            yield _bad(stack, name, "healthcheck is disabled", "healthcheck: disabled")
        elif test:
            yield _ok(stack, name, f"healthcheck.test: {test}")
        else:
            yield _bad(stack, name, "no healthcheck", "healthcheck: not set")


def _binds(svc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            src, _, rest = vol.partition(":")
            if src.startswith("/"):
                yield {"type": "bind", "source": src, "target": rest.split(":")[0]}
        elif isinstance(vol, Mapping) and vol.get("type") == "bind":
            yield vol


@rule("TVD-111", "No sensitive host directory is mounted", "stack", "high", cis=("5.6",),
      remediation="Remove bind mounts of host system directories; use volumes, configs or secrets.")
def sensitive_mounts(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        bad = [f"{b.get('source')} -> {b.get('target')}" for b in _binds(svc)
               if str(b.get("source", "")).rstrip("/") in {d.rstrip("/") for d in SENSITIVE_DIRS}
               or str(b.get("source", "")) == "/"]
        yield _bad(stack, name, "mounts a host system directory", f"volumes: {bad}") if bad else _ok(stack, name)


@rule("TVD-112", "The Docker socket is never mounted", "stack", "critical", cis=("5.32",),
      remediation="Remove the bind mount of the Docker (or containerd) socket.")
def docker_socket(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        bad = [f"{b.get('source')} -> {b.get('target')}" for b in _binds(svc)
               if str(b.get("source", "")).endswith(SOCKETS)]
        yield _bad(stack, name, "mounts the Docker socket", f"volumes: {bad}") if bad else _ok(stack, name)


def _ports(svc: Mapping[str, Any]) -> list[int]:
    out = []
    for p in svc.get("ports") or []:
        value = p.get("published") if isinstance(p, Mapping) else str(p).split(":")[-2] if ":" in str(p) else None
        if value not in (None, ""):
            out.append(int(str(value).split("-")[0]))
    return out


@rule("TVD-113", "No privileged port (< 1024) is published", "stack", "medium", cis=("5.8",),
      remediation="Publish on a port >= 1024 (the container may listen on 80/443 inside).",
      params={"allowed": [80, 443]})
def privileged_ports(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        low = [p for p in _ports(svc) if p < 1024 and p not in params["allowed"]]
        yield _bad(stack, name, f"publishes privileged ports {low}", f"ports: {_ports(svc)}") if low \
            else _ok(stack, name, f"ports: {_ports(svc)}")


@rule("TVD-114", "Only allowed ports are published", "stack", "high", cis=("5.9",),
      remediation="Publish only the ports in the pack's allow list (the nginx fronts 8443/9443, MQTT over TLS).",
      params={"allowed": [80, 443, 8443, 9443, 8883]})
def allowed_ports(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    allowed = {int(p) for p in params["allowed"]}
    for stack, name, svc in services(facts):
        extra = [p for p in _ports(svc) if p not in allowed]
        yield _bad(stack, name, f"publishes ports outside the allow list: {extra}", f"ports: {_ports(svc)}") \
            if extra else _ok(stack, name, f"ports: {_ports(svc)}")


@rule("TVD-115", "Mount propagation is never shared", "stack", "high", cis=("5.20",),
      remediation="Remove bind.propagation shared/rshared from bind mounts.")
def propagation(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        bad = [str(b.get("source")) for b in _binds(svc)
               if str((b.get("bind") or {}).get("propagation", "")) in ("shared", "rshared")]
        yield _bad(stack, name, "shared mount propagation", f"volumes: {bad}") if bad else _ok(stack, name)


@rule("TVD-116", "Default ulimits are overridden only where needed", "stack", "low", cis=("5.19",),
      remediation="Remove ulimits overrides unless the service needs them; record why in a waiver.")
def ulimits(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts):
        u = svc.get("ulimits") or {}
        yield _bad(stack, name, "overrides default ulimits", f"ulimits: {dict(u)}") if u else _ok(stack, name)


@rule("TVD-117", "Services run as a non-root user", "stack", "high", cis=("4.1",),
      remediation="Set user: to a non-zero uid (the renderer uses 65534:65534).")
def non_root(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts, ("rendered", "live")):
        user = str(svc.get("user") or "")
        root = user.split(":")[0] in ("", "0", "root")
        yield _bad(stack, name, "runs as root", f"user: {user or 'not set'}") if root \
            else _ok(stack, name, f"user: {user}")
