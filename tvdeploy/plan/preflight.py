"""Swarm pre-flight: pure checks of observed host facts against the site file.

A mismatch is a *finding* naming the node and what is missing — never a crash later. Findings
of severity "error" stop a bootstrap; "warning" findings are printed (and, in the lab, expected:
its kernel lacks ESP and IPVS and its site file says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvdeploy.config.site import Site

MAX_CLOCK_OFFSET_S = 5.0
MIN_FREE_KB = 2 * 1024 * 1024

# (port, protocol, purpose); ESP (IP protocol 50) is checked as a kernel feature.
SWARM_PORTS = (
    (2377, "tcp", "cluster management"),
    (7946, "tcp", "node communication"),
    (7946, "udp", "node communication"),
    (4789, "udp", "overlay network traffic"),
)


@dataclass(frozen=True)
class Finding:
    node: str
    check: str
    severity: str  # error | warning | info
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "check": self.check, "severity": self.severity, "message": self.message}


def kernel_findings(site: Site, node: str, facts: Any) -> list[Finding]:
    out: list[Finding] = []
    esp, ipvs = facts.kernel.esp, facts.kernel.ipvs
    if not esp.ok:
        if site.swarm.encrypted_networks:
            out.append(
                Finding(
                    node,
                    "kernel.esp",
                    "error",
                    f"kernel lacks ESP ({esp.evidence}): encrypted overlay networks would carry no "
                    "traffic between nodes; fix the kernel or set swarm.encrypted_networks: false",
                )
            )
        else:
            out.append(
                Finding(
                    node,
                    "kernel.esp",
                    "warning",
                    f"kernel lacks ESP ({esp.evidence}); site declares swarm.encrypted_networks: false",
                )
            )
    if not ipvs.ok:
        if site.swarm.publish_mode == "ingress":
            out.append(
                Finding(
                    node,
                    "kernel.ipvs",
                    "error",
                    f"kernel lacks IPVS ({ipvs.evidence}): the ingress routing mesh would not answer; "
                    "fix the kernel or set swarm.publish_mode: host",
                )
            )
        else:
            out.append(
                Finding(
                    node,
                    "kernel.ipvs",
                    "warning",
                    f"kernel lacks IPVS ({ipvs.evidence}); site declares swarm.publish_mode: host",
                )
            )
    return out


def host_findings(site: Site, node: str, facts: Any) -> list[Finding]:
    out: list[Finding] = []
    if not facts.docker.installed:
        out.append(Finding(node, "docker.installed", "error",
                           "Docker Engine is not installed: run 'tvdeploy engine install SITE --bundle BUNDLE' first"))
    if facts.clock_offset is not None and abs(facts.clock_offset) > MAX_CLOCK_OFFSET_S:
        out.append(
            Finding(
                node,
                "clock",
                "error",
                f"clock is {facts.clock_offset:+.1f} s off the operator's (limit "
                f"{MAX_CLOCK_OFFSET_S:.0f} s): TLS and swarm certificates would fail",
            )
        )
    if facts.disk is not None and facts.disk.avail_kb < MIN_FREE_KB:
        out.append(
            Finding(node, "disk", "warning", f"only {facts.disk.avail_kb // 1024} MiB free on {facts.disk.mount}")
        )
    return out + kernel_findings(site, node, facts)


# Port probe results (tvdeploy.execute.preflight): "open" (connected), "closed" (refused: the
# host answered, nothing listens), "filtered" (timed out or no route: something drops it),
# "skipped" (could not be probed from that node).
PortKey = tuple[str, str, int, str]  # (from node, to node, port, protocol)


def port_findings(results: dict[PortKey, str], listening: set[tuple[str, int]] | None = None) -> list[Finding]:
    """*listening*: (node, port) that must accept connections now (swarm members already
    listening on 7946, active managers on 2377). Before a node joins, nothing listens on its
    swarm ports, so "closed" proves the path is open; a REJECT rule cannot be told apart from
    that until the port listens, which is why a closed port only counts where it must listen."""
    must_listen = listening or set()
    out = []
    for (src, dst, port, proto), status in sorted(results.items()):
        if status == "filtered":
            out.append(
                Finding(
                    src,
                    f"port.{port}/{proto}",
                    "error",
                    f"cannot reach {dst} on {port}/{proto} (timed out or no route): open it between the swarm nodes",
                )
            )
        elif status == "closed" and (dst, port) in must_listen:
            out.append(
                Finding(
                    src,
                    f"port.{port}/{proto}",
                    "error",
                    f"{dst} refuses {port}/{proto} although its swarm should listen there: "
                    "a firewall rejects it or the node's swarm is not running",
                )
            )
        elif status == "skipped":
            out.append(
                Finding(
                    src,
                    f"port.{port}/{proto}",
                    "warning",
                    f"could not probe {dst} on {port}/{proto} from this node (no bash)",
                )
            )
    return out


def udp_not_checked(site: Site) -> Finding:
    """UDP has no handshake: a probe cannot tell an open port from a dropped one without a
    listener on the far side, so these are reported as not checked rather than guessed."""
    what = (
        "7946/udp and 4789/udp"
        if site.swarm.data_path_port == 4789
        else f"7946/udp and {site.swarm.data_path_port}/udp"
    )
    if site.swarm.encrypted_networks:
        what += " and ESP (IP protocol 50)"
    return Finding(
        "*",
        "port.udp",
        "info",
        f"{what} between the nodes cannot be checked by a connect "
        "probe; not checked (the overlay traffic test after bootstrap shows them)",
    )


def preflight(
    site: Site,
    host_facts: dict[str, Any],
    unreachable: dict[str, str],
    ports: dict[PortKey, str] | None = None,
    listening: set[tuple[str, int]] | None = None,
) -> list[Finding]:
    """All findings for the site: unreachable nodes first, then each node's host checks, then
    the ports between nodes (when they were probed)."""
    findings = [Finding(n, "reachable", "error", why) for n, why in sorted(unreachable.items())]
    for node in site.nodes:
        if node.name in host_facts:
            findings.extend(host_findings(site, node.name, host_facts[node.name]))
    if ports is not None:
        findings.extend(port_findings(ports, listening))
        findings.append(udp_not_checked(site))
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]
