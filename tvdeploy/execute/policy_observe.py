"""Gather the facts ``policy check`` needs: host facts over SSH (ONE probe per node, in
parallel), engine facts over each node's mutual-TLS Docker API, the swarm and the live service
specs from one manager, and the bundle's image and signature facts when a bundle is given.

A node that cannot be reached is recorded in ``PolicyFacts.unreachable`` (it becomes a failed
finding), never skipped silently. ``ObserveStats`` counts SSH round trips per node and times
each phase (for the benchmark).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tvdeploy.errors import TvdeployError
from tvdeploy.policy.model import TARGETS, EngineFacts, HostFacts, PolicyFacts, StackFacts, SwarmFacts

LIVE_TARGETS = ("stack", "engine", "host", "swarm")


@dataclass
class ObserveStats:
    ssh_round_trips: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def targets_for(requested: list[str], has_bundle: bool) -> tuple[str, ...]:
    for t in requested:
        if t not in TARGETS:
            raise TvdeployError(f"--target {t}: expected one of {', '.join(TARGETS)}")
    if requested:
        if ("image" in requested or "bundle" in requested) and not has_bundle:
            raise TvdeployError("--target image/bundle: give the bundle to check with --bundle")
        return tuple(t for t in TARGETS if t in requested)
    return tuple(t for t in TARGETS if t in LIVE_TARGETS or has_bundle)


class _Counting:
    """An SSH connection that counts its round trips."""

    def __init__(self, conn: Any, counter: dict[str, int], node: str) -> None:
        self.conn, self.counter, self.node = conn, counter, node

    def run(self, cmd: str, input: bytes | None = None, check: bool = True) -> Any:
        self.counter[self.node] = self.counter.get(self.node, 0) + 1
        return self.conn.run(cmd, input=input, check=check)


def _hosts(site: Any, stats: ObserveStats, unreachable: dict[str, str], reporter: Any) -> dict[str, HostFacts]:
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.facts import policy_host
    from tvdeploy.parallel import for_each

    def one(node: Any) -> HostFacts | None:
        try:
            return policy_host.gather(node.name, _Counting(pool.get(node.name), stats.ssh_round_trips, node.name))
        except TvdeployError as exc:
            unreachable[f"host:{node.name}"] = exc.message
            return None

    with open_pool(site, reporter=reporter) as pool:
        found = for_each(site.nodes, one, label=lambda n: n.name)
    return {f.node: f for f in found if f is not None}


def _engines(site: Any, clients: Any, unreachable: dict[str, str]) -> dict[str, EngineFacts]:
    from tvdeploy.connectors.docker_api import describe_error
    from tvdeploy.facts.policy_engine import engine_facts
    from tvdeploy.parallel import for_each

    def one(node: Any) -> EngineFacts | None:
        client = clients.get(node.name)
        if client is None:
            unreachable[f"engine:{node.name}"] = "no client certificate: run tvdeploy tls apply first"
            return None
        try:
            return engine_facts(node.name, client)
        except Exception as exc:  # noqa: BLE001 - any API failure: this node's engine is not observed
            unreachable[f"engine:{node.name}"] = describe_error(node.name, str(node.address), 2376, exc).message
            return None

    found = for_each(site.nodes, one, label=lambda n: n.name)
    return {f.node: f for f in found if f is not None}


def _swarm(site: Any, clients: Any, engines: dict[str, EngineFacts], unreachable: dict[str, str],
           now: datetime) -> tuple[SwarmFacts | None, StackFacts | None]:
    from tvdeploy.facts.policy_engine import swarm_facts

    for node in site.managers:
        eng = engines.get(node.name)
        if eng is not None and (eng.info.get("Swarm") or {}).get("ControlAvailable"):
            try:
                return swarm_facts(clients[node.name], now)
            except Exception as exc:  # noqa: BLE001 - try the next manager
                unreachable[f"swarm:{node.name}"] = f"swarm API on {node.name}: {exc}"
    unreachable.setdefault("swarm:", "no manager with an active swarm answered")
    return None, None


def observe(site: Any, site_path: Path, targets: tuple[str, ...], *, bundle: Path | None = None,
            release: Path | None = None, reporter: Any = None, now: datetime | None = None
            ) -> tuple[PolicyFacts, ObserveStats]:
    from tvdeploy.execute.swarm_session import open_clients
    from tvdeploy.facts.policy_engine import standalone_stack, with_image_healthchecks

    if release is not None:
        raise TvdeployError("--release: checking a release's rendered stack is done by release deploy's gate; "
                            "policy check reads the live service specs")
    now = now or datetime.now(UTC)
    stats, unreachable = ObserveStats(), dict[str, str]()
    hosts: dict[str, HostFacts] | None = None
    engines: dict[str, EngineFacts] | None = None
    swarm: SwarmFacts | None = None
    stacks: list[StackFacts] = []
    start = time.perf_counter()
    if any(t in targets for t in ("host", "engine", "swarm")):
        hosts = _hosts(site, stats, unreachable, reporter)
        stats.seconds["host"] = time.perf_counter() - start
    if any(t in targets for t in ("engine", "swarm", "stack")):
        t0 = time.perf_counter()
        clients = open_clients(site)
        try:
            engines = _engines(site, clients, unreachable)
            swarm, live = _swarm(site, clients, engines, unreachable, now)
            assert engines is not None
        finally:
            clients.close()
        if live is not None:
            live = with_image_healthchecks(live, engines)
        stacks = [s for s in [live, *(standalone_stack(e) for e in engines.values())] if s is not None]
        stats.seconds["engine+swarm"] = time.perf_counter() - t0
    bundle_facts = images = None
    if bundle is not None:
        from tvdeploy.facts.policy_bundle import gather

        t0 = time.perf_counter()
        bundle_facts, images = gather(bundle, Path(site.trust.root) if site.trust.root else None, now)
        stats.seconds["bundle"] = time.perf_counter() - t0
    facts = PolicyFacts(stacks=tuple(stacks), images=images, bundle=bundle_facts, engines=engines, hosts=hosts,
                        swarm=swarm, unreachable=unreachable, now=now.isoformat())
    return facts, stats
