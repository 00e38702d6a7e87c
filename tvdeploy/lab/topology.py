"""Which nodes a lab of N nodes has: names, roles, zones (pure).

Managers come first and their count is odd (a swarm keeps quorum only with an odd number):
1 for one or two nodes, 3 from three nodes on. Managers sit in zone ``core``, workers in
``edge``; a lab without workers puts its last manager in ``edge`` so both zones exist.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_NODES = 32


@dataclass(frozen=True)
class NodeSpec:
    number: int  # 1-based, fixes the address and the veth name
    name: str
    role: str  # "manager" | "worker"
    zone: str


def manager_count(total: int) -> int:
    return 1 if total < 3 else 3


def plan_nodes(total: int) -> list[NodeSpec]:
    if not 1 <= total <= MAX_NODES:
        raise ValueError(f"--nodes must be between 1 and {MAX_NODES}, got {total}")
    managers = manager_count(total)
    specs = []
    for number in range(1, total + 1):
        if number <= managers:
            name, role, zone = f"lab-mgr-{number}", "manager", "core"
        else:
            name, role, zone = f"lab-wkr-{number - managers}", "worker", "edge"
        specs.append(NodeSpec(number, name, role, zone))
    if managers == total and total > 1:
        last = specs[-1]
        specs[-1] = NodeSpec(last.number, last.name, last.role, "edge")
    return specs


def next_worker(existing: list[NodeSpec]) -> NodeSpec:
    """The node `lab node add` creates: an unconfigured worker after the existing ones."""
    numbers = {n.number for n in existing}
    names = {n.name for n in existing}
    number = max(numbers, default=0) + 1
    if number > MAX_NODES + 16:
        raise ValueError("too many nodes in this lab")
    k = 1
    while f"lab-wkr-{k}" in names:
        k += 1
    return NodeSpec(number, f"lab-wkr-{k}", "worker", "edge")
