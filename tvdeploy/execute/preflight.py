"""Swarm pre-flight over SSH: host facts of every node and TCP port probes between the nodes.

Read only. A node that cannot be reached becomes a finding, not an exception, so one pre-flight
shows everything that is wrong at once. The judging is pure (tvdeploy.plan.preflight); this
module only gathers and parses.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import TvdeployError
from tvdeploy.plan.preflight import Finding, PortKey, preflight

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.facts.host import HostFacts
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

MANAGER_PORT = 2377
GOSSIP_PORT = 7946
PROBE_TIMEOUT_S = 2
PORT_MARK = "@@port "

# One background probe per target so the whole script takes about one timeout. bash's /dev/tcp
# tells "refused" (host answered) from a timeout or no route (something drops the packets);
# `timeout` bounds it. Output: "@@port <address> <port> open|closed|filtered".
_PROBE_ONE = (
    'p() {{ e=$(timeout {t} bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); r=$?; '
    "if [ $r = 0 ]; then s=open; elif [ $r = 124 ]; then s=filtered; "
    'else case "$e" in *refused*) s=closed;; *) s=filtered;; esac; fi; '
    'echo "{mark}$1 $2 $s"; }}'
)


@dataclass
class PreflightResult:
    host_facts: dict[str, HostFacts]
    unreachable: dict[str, str]
    ports: dict[PortKey, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def port_targets(site: Site, src: str) -> list[tuple[str, str, int]]:
    """(peer name, peer address, port) to probe from *src*: 7946 to every peer, 2377 to managers
    (workers never listen on 2377)."""
    out = []
    for peer in site.nodes:
        if peer.name == src:
            continue
        out.append((peer.name, str(peer.address), GOSSIP_PORT))
        if peer.role == "manager":
            out.append((peer.name, str(peer.address), MANAGER_PORT))
    return out


def port_script(targets: list[tuple[str, str, int]], timeout: int = PROBE_TIMEOUT_S) -> str:
    lines = [
        "if ! command -v bash >/dev/null 2>&1; then echo '@@port none'; exit 0; fi",
        _PROBE_ONE.format(t=int(timeout), mark=PORT_MARK),
    ]
    lines += [f"p {shlex.quote(addr)} {int(port)} &" for _name, addr, port in targets]
    lines.append("wait")
    return "\n".join(lines)


def port_jobs(targets: list[tuple[str, str, int]], timeout: int = PROBE_TIMEOUT_S) -> tuple[str, str]:
    """The port probe as shell text to put around the host-facts probe (one SSH command per
    node): *before* starts every probe in the background with its report on stderr (stdout
    carries the facts' sections), *after* waits for them. No bash: one "none" line, no exit."""
    before = "\n".join(
        [
            "if command -v bash >/dev/null 2>&1; then",
            _PROBE_ONE.format(t=int(timeout), mark=PORT_MARK),
            *[f"p {shlex.quote(addr)} {int(port)} >&2 &" for _name, addr, port in targets],
            "else echo '@@port none' >&2; fi",
            "",
        ]
    )
    return before, "\nwait\n"


def parse_port_output(src: str, targets: list[tuple[str, str, int]], text: str) -> dict[PortKey, str]:
    """Every target gets a status; a target missing from the output (truncated, killed) or a node
    without bash is "skipped" rather than guessed."""
    seen: dict[tuple[str, int], str] = {}
    for line in text.splitlines():
        if not line.startswith(PORT_MARK):
            continue
        parts = line[len(PORT_MARK) :].split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2] in ("open", "closed", "filtered"):
            seen[(parts[0], int(parts[1]))] = parts[2]
    return {(src, name, port, "tcp"): seen.get((addr, port), "skipped") for name, addr, port in targets}


def listening_now(host_facts: dict[str, Any]) -> set[tuple[str, int]]:
    """Ports that must already accept connections: members listen on 7946, active managers
    (control available) on 2377."""
    out: set[tuple[str, int]] = set()
    for name, facts in host_facts.items():
        if facts.swarm.local_state == "active":
            out.add((name, GOSSIP_PORT))
            if facts.swarm.control_available:
                out.add((name, MANAGER_PORT))
    return out


def inspect_node(site: Site, pool: SSHPool, name: str) -> tuple[HostFacts | str, dict[PortKey, str]]:
    """One node: host facts and its port probe in ONE SSH command (the probes run in the
    background while the facts are read; only the judging needs both). A node that cannot be
    reached gives its one-line reason instead of facts.

    The probes make the round trip up to PROBE_TIMEOUT_S longer when a port is filtered, so the
    clock offset (midpoint of the round trip) may err by about a second more: still far below
    the warning threshold (tvdeploy.facts.host.CLOCK_WARN_SECONDS)."""
    from tvdeploy.facts.host import gather_with

    try:
        conn = pool.get(name)
    except TvdeployError as exc:
        return exc.message, {}
    targets = port_targets(site, name)
    before, after = port_jobs(targets) if targets else ("", "")
    try:
        facts, result = gather_with(name, conn, before, after)
    except TvdeployError as exc:
        return exc.message, {}
    return facts, parse_port_output(name, targets, result.stderr) if targets else {}


def run_preflight(site: Site, pool: SSHPool, reporter: Reporter) -> PreflightResult:
    from tvdeploy.parallel import for_each

    reporter.task("swarm.facts", f"reading facts of {len(site.nodes)} node(s)", total=len(site.nodes))

    def one(name: str) -> tuple[HostFacts | str, dict[PortKey, str]]:
        result = inspect_node(site, pool, name)
        reporter.advance("swarm.facts")
        return result

    names = [n.name for n in site.nodes]
    results = dict(zip(names, for_each(names, one, label=lambda n: f"node {n}"), strict=True))
    reporter.done("swarm.facts")
    facts = {n: f for n, (f, _p) in results.items() if not isinstance(f, str)}
    unreachable = {n: f for n, (f, _p) in results.items() if isinstance(f, str)}
    ports = {k: v for n, (_f, p) in results.items() if n in facts for k, v in p.items()}
    findings = preflight(site, facts, unreachable, ports, listening_now(facts))
    return PreflightResult(facts, unreachable, ports, findings)
