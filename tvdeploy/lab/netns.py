"""The lab's network: one bridge on the host, a network namespace + veth pair per node.

Nodes get an address on the bridge and NO default route: the site is air-gapped, and a swarm
manager resolving an image would otherwise try to reach Docker Hub.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tvdeploy.lab.proc import run

log = logging.getLogger(__name__)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def ensure_bridge(bridge: str, gateway: str, prefixlen: int) -> None:
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", bridge])
    if f"{gateway}/{prefixlen}" not in addrs:
        run(["ip", "addr", "add", f"{gateway}/{prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def delete_bridge(bridge: str) -> None:
    if link_exists(bridge):
        run(["ip", "link", "del", bridge], check=False)


def ensure_node_net(netns: str, veth: str, bridge: str, address: str, prefixlen: int) -> None:
    """Create (or complete) the node's namespace, its veth pair (eth0 inside) and its address."""
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    ns = ["ip", "-n", netns]
    inside = run(ns + ["-o", "link", "show"])
    if " eth0:" not in inside and "eth0@" not in inside:
        if link_exists(veth):
            run(["ip", "link", "del", veth], check=False)
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p"])
        run(["ip", "link", "set", f"{veth}p", "netns", netns])
        run(ns + ["link", "set", f"{veth}p", "name", "eth0"])
    if f"{address}/{prefixlen}" not in run(ns + ["-o", "-4", "addr", "show", "dev", "eth0"]):
        run(ns + ["addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])
    run(ns + ["link", "set", "lo", "up"])
    run(ns + ["link", "set", "eth0", "up"])
    attach(veth, bridge)


def attach(veth: str, bridge: str) -> None:
    run(["ip", "link", "set", veth, "master", bridge])
    run(["ip", "link", "set", veth, "up"])


def detach(veth: str) -> None:
    """Cut the node's link (`lab node isolate`): its veth leaves the bridge and goes down."""
    run(["ip", "link", "set", veth, "nomaster"], check=False)
    run(["ip", "link", "set", veth, "down"])


def is_attached(veth: str, bridge: str) -> bool:
    master = Path(f"/sys/class/net/{veth}/master")
    return master.exists() and master.resolve().name == bridge


def delete_node_net(netns: str, veth: str) -> None:
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)
    if link_exists(veth):
        run(["ip", "link", "del", veth], check=False)


def clean_node_netns(netns: str) -> None:
    """Return the namespace to what `lab up` made (lo + eth0): remove the links and firewall
    rules a node's dockerd created (docker0, docker_gwbridge, veths), for `lab reset`."""
    ns = ["ip", "-n", netns]
    for line in run(ns + ["-o", "link", "show"]).splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name not in ("lo", "eth0"):
            run(ns + ["link", "del", name], check=False)
    enter = ["nsenter", f"--net=/run/netns/{netns}"]
    for cmd in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            run(enter + [cmd, "-t", table, "-F"], check=False)
            run(enter + [cmd, "-t", table, "-X"], check=False)
        run(enter + [cmd, "-P", "FORWARD", "ACCEPT"], check=False)


# Host firewall --------------------------------------------------------------------------------
def forward_rule(bridge: str, comment: str) -> list[str]:
    """A dockerd on the host (the packaged service) sets FORWARD to DROP; with br_netfilter that
    also drops traffic between the bridge's ports, i.e. between nodes."""
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT"]


def ensure_rule(rule: list[str]) -> None:
    if not _rule_present(rule):
        run(["iptables", "-I", *rule])


def _rule_present(rule: list[str]) -> bool:
    import subprocess

    return subprocess.run(["iptables", "-C", *rule], capture_output=True, check=False).returncode == 0


def delete_rule(rule: list[str]) -> None:
    for _ in range(5):  # a rule inserted twice by a crashed run: remove every copy
        if not _rule_present(rule):
            return
        run(["iptables", "-D", *rule], check=False)


def rules_with_comment(comment: str) -> list[str]:
    out = run(["iptables", "-S"], check=False)
    return [line for line in out.splitlines() if f'"{comment}"' in line or f" {comment} " in line + " "]
