"""Plan the TLS setup of a site's nodes. Pure: (site, host facts, local PKI) -> TlsPlan.

Per node the plan says: issue a server certificate (key made on the node), install the site CA,
write daemon.json, write the systemd drop-in, fix key permissions, restart dockerd — or nothing.
A converged site plans nothing, so a second ``tls apply`` touches no node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError
from tvdeploy.facts.host import CERT_PATH, DAEMON_JSON, DROPIN_PATH, HostFacts
from tvdeploy.pki.certinfo import CertInfo, cert_info, parse_cert, sha256_fingerprint, signed_by
from tvdeploy.pki.issue import ServerNames, server_names
from tvdeploy.pki.local import LocalPki
from tvdeploy.plan.daemon_config import render_daemon_json, render_systemd_dropin, same_config

if TYPE_CHECKING:
    from cryptography import x509

    from tvdeploy.config.site import Node, Site

CREATE_CA = "create-ca"
ISSUE_CLIENT = "issue-client-cert"
ISSUE_SERVER = "issue-server-cert"
INSTALL_CA = "install-ca"
WRITE_CONFIG = "write-daemon-config"
WRITE_DROPIN = "write-systemd-dropin"
FIX_KEY_MODE = "fix-key-permissions"
RESTART = "restart-docker"
# Steps after which dockerd must restart to pick the change up.
NEEDS_RESTART = frozenset({ISSUE_SERVER, INSTALL_CA, WRITE_CONFIG, WRITE_DROPIN})


@dataclass(frozen=True)
class Step:
    action: str
    reason: str
    node: str | None = None

    def to_json(self) -> dict[str, str]:
        doc = {"action": self.action, "reason": self.reason}
        if self.node is not None:
            doc["node"] = self.node
        return doc


@dataclass(frozen=True)
class NodePlan:
    node: str
    address: str
    init: str
    steps: tuple[Step, ...]
    names: ServerNames
    daemon_json: str  # desired content
    dropin: str | None  # desired content (systemd hosts)
    live: bool  # the node serves its API or is in a swarm now: restart it alone

    def has(self, action: str) -> bool:
        return any(s.action == action for s in self.steps)


@dataclass(frozen=True)
class TlsPlan:
    site: str
    global_steps: tuple[Step, ...]
    nodes: tuple[NodePlan, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> list[Step]:
        return list(self.global_steps) + [s for n in self.nodes for s in n.steps]

    @property
    def changes(self) -> bool:
        return bool(self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "changes": self.changes,
            "steps": [s.to_json() for s in self.steps],
            "nodes": {n.node: [s.action for s in n.steps] for n in self.nodes},
            "warnings": list(self.warnings),
        }


def client_cert_reason(pki: LocalPki, ca: x509.Certificate | None, now: datetime) -> str | None:
    """Why the operator's client certificate must be (re)issued, or None."""
    cert = parse_cert(pki.client_cert_pem)
    if ca is None:
        return "new site CA"
    if cert is None:
        return "no client certificate" if pki.client_cert_pem is None else "client certificate unreadable"
    info = cert_info(cert)
    if not signed_by(cert, ca):
        return "client certificate not signed by the site CA"
    if pki.client_key_public_sha256 != info.public_key_sha256:
        return "client key missing or does not match the certificate"
    if "clientAuth" not in info.eku:
        return "client certificate lacks EKU clientAuth"
    if info.needs_renewal(now):
        return f"client certificate expires in {info.days_left(now):.0f} days"
    if pki.client_ca_pem != pki.ca_pem:
        return "client folder's ca.pem is not the site CA"
    return None


def server_cert_reason(facts: HostFacts, ca: x509.Certificate | None, names: ServerNames,
                       now: datetime) -> str | None:
    """Why a node's server certificate must be (re)issued, or None."""
    if facts.server_cert_pem is None:
        return f"no certificate at {CERT_PATH}"
    cert = parse_cert(facts.server_cert_pem)
    if cert is None:
        return f"{CERT_PATH} is not a valid certificate"
    info: CertInfo = cert_info(cert)
    if ca is None:
        return "new site CA"
    if not signed_by(cert, ca):
        return "certificate not signed by the site CA"
    if facts.server_key is None or facts.server_key.public_key_sha256 is None:
        return "server key missing or unreadable"
    if facts.server_key.public_key_sha256 != info.public_key_sha256:
        return "server key does not match the certificate"
    if set(info.dns_names) != set(names.dns) or set(info.ip_addresses) != set(names.ips):
        return (f"names changed: certificate has {sorted(info.dns_names + info.ip_addresses)}, "
                f"site wants {sorted(names.dns + names.ips)}")
    if "serverAuth" not in info.eku:
        return "certificate lacks EKU serverAuth"
    if info.needs_renewal(now):
        return f"certificate expires in {info.days_left(now):.0f} days"
    return None


def _ca_reason(facts: HostFacts, ca: x509.Certificate | None) -> str | None:
    node_ca = parse_cert(facts.ca_pem)
    if ca is None:
        return "new site CA"
    if node_ca is None:
        return "site CA not installed"
    if sha256_fingerprint(node_ca) != sha256_fingerprint(ca):
        return "node trusts a different CA"
    return None


def _is_live(facts: HostFacts) -> bool:
    data = facts.daemon_config.data or {}
    serving = bool(data.get("tlsverify")) and any(
        str(h).startswith("tcp://") for h in data.get("hosts", []) or []
    )
    return (facts.swarm.running and serving) or facts.swarm.local_state in ("active", "locked", "pending")


def plan_node(site: Site, node: Node, facts: HostFacts, ca: x509.Certificate | None, now: datetime,
              rotate: bool = False) -> NodePlan:
    names = server_names(site, node)
    desired = render_daemon_json(str(node.address), facts.daemon_config.data)
    dropin = render_systemd_dropin(facts.docker.dockerd_path or "/usr/bin/dockerd") \
        if facts.init == "systemd" else None
    steps: list[Step] = []
    cert_reason = "rotation requested" if rotate else server_cert_reason(facts, ca, names, now)
    if cert_reason:
        steps.append(Step(ISSUE_SERVER, cert_reason, node.name))
    elif facts.server_key is not None and (facts.server_key.mode != "400" or facts.server_key.owner != "root"):
        steps.append(Step(FIX_KEY_MODE, f"server key is {facts.server_key.mode} "
                          f"{facts.server_key.owner}, want 400 root", node.name))
    ca_reason = _ca_reason(facts, ca)
    if ca_reason:
        steps.append(Step(INSTALL_CA, ca_reason, node.name))
    if not same_config(facts.daemon_config.data, desired):
        why = "no daemon.json" if facts.daemon_config.raw is None else f"{DAEMON_JSON} differs"
        steps.append(Step(WRITE_CONFIG, why, node.name))
    if dropin is not None and facts.dropin != dropin.strip("\n"):
        steps.append(Step(WRITE_DROPIN, f"{DROPIN_PATH} " + ("missing" if facts.dropin is None else "differs"),
                          node.name))
    changed = [s.action for s in steps if s.action in NEEDS_RESTART]
    if changed:
        steps.append(Step(RESTART, "to load " + ", ".join(changed), node.name))
    elif not facts.swarm.running:
        steps.append(Step(RESTART, f"dockerd is not running ({facts.swarm.error or 'no answer'})", node.name))
    elif facts.changed_since_start:
        # An earlier run wrote these and was cut off before its restart.
        steps.append(Step(RESTART, "dockerd started before " + ", ".join(facts.changed_since_start)
                          + " changed", node.name))
    return NodePlan(node=node.name, address=str(node.address), init=facts.init, steps=tuple(steps),
                    names=names, daemon_json=desired, dropin=dropin, live=_is_live(facts))


def blockers(site: Site, facts: dict[str, HostFacts]) -> list[str]:
    problems = []
    for node in site.nodes:
        f = facts[node.name]
        if not f.docker.installed:
            problems.append(f"node {node.name}: Docker is not installed (no dockerd on the PATH); "
                            "install it before tls apply")
        if f.daemon_config.error:
            problems.append(f"node {node.name}: {f.daemon_config.error}; fix or remove it "
                            "(tvdeploy keeps the keys it does not manage, so it must parse)")
    return problems


def plan_tls(site: Site, facts: dict[str, HostFacts], pki: LocalPki, now: datetime,
             rotate: bool = False) -> TlsPlan:
    problems = blockers(site, facts)
    if problems:
        raise RefusedError(problems[0], details=problems[1:])
    ca = parse_cert(pki.ca_pem)
    global_steps: list[Step] = []
    if ca is None:
        global_steps.append(Step(CREATE_CA, "no site CA yet"))
    reason = "rotation requested" if rotate else client_cert_reason(pki, ca, now)
    if reason:
        global_steps.append(Step(ISSUE_CLIENT, reason))
    nodes = tuple(plan_node(site, n, facts[n.name], ca, now, rotate) for n in site.nodes)
    warnings = tuple(w for n in site.nodes for w in facts[n.name].warnings)
    return TlsPlan(site=site.site.name, global_steps=tuple(global_steps), nodes=nodes, warnings=warnings)
