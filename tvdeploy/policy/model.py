"""The policy data model: rules, the results a rule's check yields, findings, facts.

A rule is a pure function of ``PolicyFacts`` and its parameters that yields ``Check`` values
(one per object it looked at: pass, fail or not-applicable). The engine turns checks into
``Finding`` values with the pack's severity and applies waivers. No I/O anywhere here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
Target = Literal["stack", "image", "bundle", "engine", "host", "swarm"]
TARGETS: tuple[str, ...] = ("stack", "image", "bundle", "engine", "host", "swarm")
CheckStatus = Literal["pass", "fail", "not-applicable"]
Status = Literal["pass", "fail", "waived", "not-applicable"]


def rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Check:
    """What a rule saw on one object: a service, an image, a node's file, the swarm."""

    object: str
    status: CheckStatus
    evidence: str = ""
    message: str = ""
    node: str | None = None
    location: str | None = None  # "node:PATH", a file path; None: the site file


def passed(obj: str, evidence: str = "", node: str | None = None, location: str | None = None) -> Check:
    return Check(obj, "pass", evidence, "", node, location)


def failed(obj: str, message: str, evidence: str = "", node: str | None = None,
           location: str | None = None) -> Check:
    return Check(obj, "fail", evidence, message, node, location)


def not_applicable(obj: str, reason: str, node: str | None = None) -> Check:
    return Check(obj, "not-applicable", "", reason, node)


CheckFn = Callable[["PolicyFacts", Mapping[str, Any]], Iterable[Check]]


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    target: str
    severity: str
    cis: tuple[str, ...]
    remediation: str
    check: CheckFn = field(compare=False, repr=False)
    params: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # PolicyFacts fields the rule reads (default: its target's)

    def to_dict(self, severity: str | None = None, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "target": self.target,
                "severity": severity or self.severity, "cis": list(self.cis),
                "remediation": self.remediation, "params": dict(params if params is not None else self.params)}


@dataclass(frozen=True)
class WaiverRef:
    file: str
    justification: str
    approver: str
    expires: str


@dataclass(frozen=True)
class Finding:
    rule: str
    cis: tuple[str, ...]
    target: str
    object: str
    node: str | None
    severity: str
    status: Status
    evidence: str
    message: str
    title: str = ""
    location: str | None = None
    waiver: WaiverRef | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule, "cis": list(self.cis), "target": self.target, "object": self.object,
            "node": self.node, "severity": self.severity, "status": self.status,
            "evidence": self.evidence, "message": self.message, "title": self.title,
            "location": self.location,
        }
        if self.waiver is not None:
            out["waiver"] = {"file": self.waiver.file, "justification": self.waiver.justification,
                             "approver": self.waiver.approver, "expires": self.waiver.expires}
        return out


# --- facts the rules read (filled by tvdeploy.facts.policy_* or by hand in tests) -------------

@dataclass(frozen=True)
class StackFacts:
    """A compose-format mapping: the rendered stack (kind "rendered"), the live service specs
    read from a manager (kind "live") or a node's standalone containers (kind "container")."""

    compose: Mapping[str, Any]
    kind: Literal["rendered", "live", "container"] = "rendered"
    source: str = ""  # the template or site file, "swarm", or the node name
    node: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    service: str
    reference: str
    digest: str
    user: str
    healthcheck: tuple[str, ...] | None  # None: none; ("NONE",): disabled
    env_names: tuple[str, ...]
    history: tuple[str, ...]  # created_by lines
    setuid_files: tuple[str, ...]
    secret_files: tuple[tuple[str, str], ...]  # (path, why)
    sshd_files: tuple[str, ...]
    size: int  # bytes of all layers (compressed as shipped)
    unreadable: str = ""  # why layers could not be read, if they could not


@dataclass(frozen=True)
class BundleFacts:
    path: str
    signers: tuple[str, ...]  # key ids whose signature counted
    threshold: int
    problems: tuple[str, ...]  # signatures that did not count, and why
    error: str  # "" when verified; else why not (no trust root, broken bundle...)
    trust_root: str
    trust_expires: str | None  # ISO time, None when no trust root was read
    days_left: int | None


@dataclass(frozen=True)
class FileStat:
    path: str
    kind: str  # "file", "directory", "socket", ...
    mode: int  # permission bits (e.g. 0o644), compared as bits
    uid: int
    gid: int
    owner: str
    group: str


@dataclass(frozen=True)
class HostFacts:
    node: str
    files: Mapping[str, FileStat]  # path -> stat; absent path: absent file
    daemon_json: Mapping[str, Any] | None  # None: no daemon.json
    daemon_json_error: str
    audit_rules: tuple[str, ...] | None  # None: no audit rules anywhere (no auditd)
    audit_source: str  # "auditctl -l", "/etc/audit/rules.d", or ""
    docker_group: tuple[str, ...] | None  # members; None: no docker group
    docker_root_mount: str  # mount point holding /var/lib/docker
    listeners: tuple[tuple[str, int], ...]  # (address, port) listening TCP sockets
    init: str = ""


@dataclass(frozen=True)
class EngineFacts:
    node: str
    info: Mapping[str, Any]
    version: Mapping[str, Any]
    containers: tuple[Mapping[str, Any], ...]  # docker inspect of every container (all=True)
    images: tuple[Mapping[str, Any], ...]
    bridge_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SwarmFacts:
    swarm: Mapping[str, Any]  # GET /swarm
    nodes: tuple[Mapping[str, Any], ...]  # GET /nodes
    networks: tuple[Mapping[str, Any], ...]  # overlay networks, ingress included
    ca_expires: str | None = None  # the swarm root CA NotAfter (ISO), from /swarm TLSInfo
    days_left_ca: int | None = None
    manager_nodes: Mapping[str, str] = field(default_factory=dict)  # node id -> site node name


@dataclass(frozen=True)
class PolicyFacts:
    stacks: tuple[StackFacts, ...] = ()
    images: tuple[ImageFacts, ...] | None = None
    bundle: BundleFacts | None = None
    engines: Mapping[str, EngineFacts] | None = None
    hosts: Mapping[str, HostFacts] | None = None
    swarm: SwarmFacts | None = None
    unreachable: Mapping[str, str] = field(default_factory=dict)  # "target:node" -> why
    now: str = ""  # ISO time the facts were read (rules that judge expiry use it)
