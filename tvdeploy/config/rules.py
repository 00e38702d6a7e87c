"""Cross-field rules of the site file. Pure: (Site) -> list of (key path, message)."""

from __future__ import annotations

from collections.abc import Callable

from tvdeploy.config.site import Site

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str]

VALID_MANAGER_COUNTS = (1, 3, 5, 7)


def unique_node_names(site: Site) -> list[Problem]:
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for i, node in enumerate(site.nodes):
        if node.name in seen:
            problems.append(
                (("nodes", i, "name"), f"duplicate node name {node.name!r} (also nodes[{seen[node.name]}])")
            )
        seen.setdefault(node.name, i)
    return problems


def unique_node_addresses(site: Site) -> list[Problem]:
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for i, node in enumerate(site.nodes):
        addr = str(node.address)
        if addr in seen:
            problems.append(
                (("nodes", i, "address"), f"duplicate address {addr} (also nodes[{seen[addr]}])")
            )
        seen.setdefault(addr, i)
    return problems


def addresses_in_subnet(site: Site) -> list[Problem]:
    net = site.network.subnet
    problems: list[Problem] = []
    for i, node in enumerate(site.nodes):
        if node.address not in net:
            problems.append((("nodes", i, "address"), f"{node.address} is outside network.subnet {net}"))
        elif node.address in (net.network_address, net.broadcast_address):
            problems.append((("nodes", i, "address"), f"{node.address} is not a host address of {net}"))
        elif site.network.gateway is not None and node.address == site.network.gateway:
            problems.append((("nodes", i, "address"), f"{node.address} is the network gateway"))
    gw = site.network.gateway
    if gw is not None and gw not in net:
        problems.append((("network", "gateway"), f"{gw} is outside network.subnet {net}"))
    return problems


def manager_quorum(site: Site) -> list[Problem]:
    count = len(site.managers)
    if count in VALID_MANAGER_COUNTS:
        return []
    return [
        (
            ("nodes",),
            f"{count} managers declared; use 1, 3, 5 or 7: a swarm keeps quorum only with an odd "
            "number of managers, and more than 7 slows every consensus round",
        )
    ]


def needed_files_exist(site: Site) -> list[Problem]:
    """Files the site reads as data must exist now; keys and secret references are checked
    when a command uses them (so an example site needs no private key)."""
    candidates: list[tuple[KeyPath, object]] = []
    if site.vcenter is not None and site.vcenter.ca_file is not None:
        candidates.append((("vcenter", "ca_file"), site.vcenter.ca_file))
    for i, p in enumerate(site.swarm.escrow_recipients):
        candidates.append((("swarm", "escrow_recipients", i), p))
    if site.stack.template is not None:
        candidates.append((("stack", "template"), site.stack.template))
    for i, p in enumerate(site.policies.waivers):
        candidates.append((("policies", "waivers", i), p))
    if site.trust.root is not None:
        candidates.append((("trust", "root"), site.trust.root))
    problems: list[Problem] = []
    from pathlib import Path

    for path, value in candidates:
        p = Path(str(value))
        if not p.is_file():
            problems.append((path, f"file not found: {p}"))
    return problems


RULES: list[Callable[[Site], list[Problem]]] = [
    unique_node_names,
    unique_node_addresses,
    addresses_in_subnet,
    manager_quorum,
    needed_files_exist,
]


def check_site(site: Site) -> list[Problem]:
    problems: list[Problem] = []
    for rule in RULES:
        problems.extend(rule(site))
    return problems
