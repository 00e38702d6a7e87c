"""Run a swarm plan through the nodes' mutual-TLS Docker APIs, one step at a time.

Steps run in plan order (the planner already ordered them to keep quorum); every step is an
audit record. Nothing here decides *what* to do: that is tvdeploy.plan.swarm.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tvdeploy.config.secrets import Secret
from tvdeploy.errors import ConnectionFailed, RefusedError, TvdeployError
from tvdeploy.facts.swarm import NS_PER_HOUR, pick_manager
from tvdeploy.plan.swarm import Step, SwarmPlan
from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

SWARM_PORT = 2377
DRAIN_TIMEOUT_S = 180.0
DOWN_TIMEOUT_S = 90.0
POLL_S = 1.0
# Worker joins and label updates touch one node each and no raft membership: safe in parallel.
PARALLEL_KINDS = frozenset({"join-worker", "label"})
# Formation: a run of these steps is spread over lanes that run side by side (see
# formation_lanes); manager joins stay in ONE lane, one at a time.
FORMATION_KINDS = frozenset({"join-manager", "join-worker", "label", "network-create"})
PARALLEL_LIMIT = 8
UPDATE_TRIES = 5
# Steps after which the kept manager may no longer be one (or a better one is back).
_DROPS_MANAGER = frozenset({"demote", "leave", "remove", "unlock", "init"})


class SwarmExecutor:
    def __init__(
        self, site: Any, clients: dict[str, Any], reporter: Reporter, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.site = site
        self.clients = clients
        self.reporter = reporter
        self.sleep = sleep
        self._cached: Any | None = None
        self._joining: tuple[Any, dict[str, str], str] | None = None
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------------
    def _client(self, name: str) -> Any:
        client = self.clients.get(name)
        if client is None:
            raise ConnectionFailed(f"node {name}: Docker API over TLS is not reachable")
        return client

    def _manager(self) -> Any:
        """A manager that can answer cluster calls, kept for the following steps (asking every
        manager before each step would cost a docker info per manager per step); dropped after
        a step that can take it away (demote, leave, remove, unlock)."""
        if self._cached is not None:
            return self._cached
        from tvdeploy.facts.swarm import local_facts

        manager = pick_manager(self.site, self.clients, local_facts(self.site, self.clients))
        if manager is None:
            raise RefusedError("no reachable manager of this site can run cluster operations")
        self._cached = manager
        return manager

    def _node_id(self, manager: Any, name: str, address: str | None = None) -> str:
        for attrs in manager.api.nodes():
            desc = attrs.get("Description") or {}
            addr = (attrs.get("Status") or {}).get("Addr")
            if desc.get("Hostname") == name or (address and addr == address) or attrs.get("ID") == name:
                return str(attrs["ID"])
        raise TvdeployError(f"node {name}: not a member of the swarm")

    def _update_node(self, manager: Any, node_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        def attempt() -> None:
            attrs = manager.api.inspect_node(node_id)
            spec = dict(attrs["Spec"])
            change(spec)
            manager.api.update_node(node_id, attrs["Version"]["Index"], spec)

        self._versioned(attempt)

    def _versioned(self, attempt: Callable[[], None]) -> None:
        """Read-modify-write of a swarm object. The swarm bumps an object's version on its own
        (a node just initialised or joined gets its certificate recorded), so "update out of
        sequence" means: read again and retry, a few times."""
        for tries in range(1, UPDATE_TRIES + 1):
            try:
                attempt()
                return
            except Exception as exc:
                if "out of sequence" not in str(exc) or tries == UPDATE_TRIES:
                    raise
                log.debug("update out of sequence (try %d); reading again", tries)
                self.sleep(0.2 * tries)

    def _address(self, name: str) -> str:
        return str(self.site.node(name).address)

    # -- steps ---------------------------------------------------------------------------------
    def init(self, step: Step) -> None:
        client = self._client(step.node or "")
        addr = self._address(step.node or "")
        spec = client.api.create_swarm_spec(
            autolock_managers=self.site.swarm.autolock,
            node_cert_expiry=self.site.swarm.cert_expiry_hours * NS_PER_HOUR,
        )
        client.api.init_swarm(
            advertise_addr=addr,
            listen_addr=f"{addr}:{SWARM_PORT}",
            data_path_addr=addr,
            data_path_port=self.site.swarm.data_path_port,
            swarm_spec=spec,
        )
        if self.site.swarm.autolock:
            self._escrow(client)

    def _escrow(self, client: Any) -> None:
        from tvdeploy.execute.unlock_escrow import store_unlock_key

        key = (client.api.get_unlock_key() or {}).get("UnlockKey")
        if key:
            ids = store_unlock_key(self.site, Secret(key))
            self.reporter.info(f"unlock key escrowed to {len(ids)} recipient(s)")

    def _join(self, step: Step, role: str) -> None:
        tokens, leader_addr = self._join_info()
        client = self._client(step.node or "")
        addr = self._address(step.node or "")
        token = tokens["Manager" if role == "manager" else "Worker"]
        client.api.join_swarm(
            remote_addrs=[f"{leader_addr}:{SWARM_PORT}"],
            join_token=token,
            listen_addr=f"{addr}:{SWARM_PORT}",
            advertise_addr=addr,
            data_path_addr=addr,
        )

    def _join_info(self) -> tuple[dict[str, str], str]:
        """Join tokens and the address to join through, asked once per kept manager (a join
        costs the cluster enough; two more round trips each add up on a large site)."""
        manager = self._manager()
        with self._lock:
            if self._joining is None or self._joining[0] is not manager:
                tokens = manager.api.inspect_swarm()["JoinTokens"]
                self._joining = (manager, tokens, self._manager_address(manager))
            return self._joining[1], self._joining[2]

    def _manager_address(self, manager: Any) -> str:
        info = manager.info()
        return str((info.get("Swarm") or {}).get("NodeAddr"))

    def join_manager(self, step: Step) -> None:
        self._join(step, "manager")

    def join_worker(self, step: Step) -> None:
        self._join(step, "worker")

    def promote(self, step: Step) -> None:
        manager = self._manager()
        self._update_node(manager, self._node_id(manager, step.node or ""), lambda s: s.update(Role="manager"))

    def demote(self, step: Step) -> None:
        manager = self._manager()
        node_id = step.detail.get("node_id") or self._node_id(manager, step.node or "")
        self._update_node(manager, node_id, lambda s: s.update(Role="worker"))

    def label(self, step: Step) -> None:
        manager = self._manager()
        wanted = dict(step.detail["labels"])
        self._update_node(
            manager,
            self._member_id(manager, step.node or ""),
            lambda s: s.update(Labels={**(s.get("Labels") or {}), **wanted}),
        )

    def _member_id(self, manager: Any, name: str) -> str:
        """The node's swarm ID from the managers' list; for a node that has only just joined
        (its hostname and address reach that list a moment after the join returns) from the
        node itself: its own docker info names the ID the join gave it."""
        try:
            return self._node_id(manager, name, self._address(name))
        except TvdeployError:
            client = self.clients.get(name)
            own = ((client.info().get("Swarm") or {}).get("NodeID") if client is not None else None) or ""
            if not own:
                raise
            log.debug("node %s: not yet listed by hostname or address; using its own node ID", name)
            return str(own)

    def activate(self, step: Step) -> None:
        manager = self._manager()
        self._update_node(manager, self._node_id(manager, step.node or ""), lambda s: s.update(Availability="active"))

    def drain(self, step: Step) -> None:
        manager = self._manager()
        node_id = step.detail["node_id"]
        self._update_node(manager, node_id, lambda s: s.update(Availability="drain"))
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            running = [t for t in manager.api.tasks(filters={"node": node_id, "desired-state": "running"})]
            if not running:
                return
            if time.monotonic() > deadline:
                raise TvdeployError(
                    f"node {step.node}: {len(running)} task(s) still running after drain ({DRAIN_TIMEOUT_S:.0f} s)"
                )
            self.reporter.advance("drain", 0, f"draining {step.node}: {len(running)} task(s) left")
            self.sleep(POLL_S)

    def leave(self, step: Step) -> None:
        """The node leaves by itself (clean: its tasks stop, it forgets the cluster). A node that
        already left (a run interrupted before `remove`) or cannot be reached is removed anyway."""
        client = self._client_by_address(step.detail.get("address"))
        state = None
        if client is not None:
            try:
                state = (client.info().get("Swarm") or {}).get("LocalNodeState")
            except Exception as exc:  # noqa: BLE001 - unreachable: remove without leaving
                log.debug("leave: %s not reachable: %s", step.node, exc)
        if client is None or state is None:
            self.reporter.warn(f"node {step.node}: not reachable; it will be removed without leaving")
            return
        if state == "inactive":
            self.reporter.info(f"node {step.node}: already out of the swarm")
            return
        client.api.leave_swarm(force=False)

    def _client_by_address(self, address: str | None) -> Any | None:
        """Nodes being removed are no longer in the site file: the CLI keys their clients by
        address ("addr:<ip>")."""
        return self.clients.get(f"addr:{address}") if address else None

    def remove(self, step: Step) -> None:
        manager = self._manager()
        node_id = step.detail["node_id"]
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while manager.api.inspect_node(node_id)["Status"]["State"] != "down":
            if time.monotonic() > deadline:
                manager.api.remove_node(node_id, force=True)
                return
            self.sleep(POLL_S)
        manager.api.remove_node(node_id, force=False)

    def unlock(self, step: Step) -> None:
        from tvdeploy.execute.unlock_escrow import load_unlock_key

        client = self._client(step.node or "")
        client.api.unlock_swarm(load_unlock_key(self.site).reveal())
        deadline = time.monotonic() + 30
        while (client.info().get("Swarm") or {}).get("LocalNodeState") != "active":
            if time.monotonic() > deadline:
                raise TvdeployError(f"node {step.node}: still locked after unlock")
            self.sleep(0.5)

    def _update_swarm(self, change: Callable[[dict[str, Any]], None]) -> Any:
        manager = self._manager()

        def attempt() -> None:
            swarm = manager.api.inspect_swarm()
            spec = dict(swarm["Spec"])
            change(spec)
            manager.api.update_swarm(version=swarm["Version"]["Index"], swarm_spec=spec)

        self._versioned(attempt)
        return manager

    def autolock(self, step: Step) -> None:
        enabled = bool(step.detail["enabled"])
        manager = self._update_swarm(lambda s: s.setdefault("EncryptionConfig", {}).update(AutoLockManagers=enabled))
        if enabled:
            self._escrow(manager)

    def escrow(self, step: Step) -> None:
        self._escrow(self._manager())

    def cert_expiry(self, step: Step) -> None:
        hours = int(step.detail["hours"])
        self._update_swarm(lambda s: s.setdefault("CAConfig", {}).update(NodeCertExpiry=hours * NS_PER_HOUR))

    def network_create(self, step: Step) -> None:
        manager = self._manager()
        options = {"encrypted": "true"} if step.detail.get("encrypted") else None
        manager.api.create_network(
            step.detail["name"],
            driver="overlay",
            options=options,
            attachable=True,
            scope="swarm",
            labels={"tvdeploy.site": self.site.site.name},
        )

    # -- driver --------------------------------------------------------------------------------
    def run(self, plan: SwarmPlan) -> None:
        """Steps in plan order; a run of worker joins or of label updates goes in parallel (they
        touch one node each and change no raft membership), everything else one at a time. A run
        of formation steps (joins, labels, networks) is spread over lanes: see formation_lanes."""
        from tvdeploy.parallel import for_each

        for group in _groups(plan.steps):
            if len(group) > 1 and group[0].kind in FORMATION_KINDS:
                self._run_formation(group)
                continue
            for batch in _batches(group):
                if len(batch) == 1:
                    self._run_step(batch[0])
                    continue
                self._manager()  # choose the manager once, before the threads share it
                for_each(batch, self._run_step, limit=PARALLEL_LIMIT, label=lambda s: s.describe())

    def _run_formation(self, steps: list[Step]) -> None:
        """The manager joins one after the other in one lane (raft membership changes one at a
        time; a joining manager's label follows its join at once, beside the next join), and
        beside that lane: each worker's join then its label, labels of nodes already in the
        swarm, and the network creations. A failure stops its own lane only; the first error
        is raised once every lane has finished (parallel.for_each)."""
        from tvdeploy.parallel import for_each

        lanes = formation_lanes(steps)
        self._manager()  # choose the manager once, before the threads share it
        work: list[tuple[str, Callable[[], None]]] = []
        if lanes.managers:
            work.append(("manager joins", lambda: self._manager_lane(lanes)))
        for lane in lanes.others:
            work.append((lane[0].describe(), functools.partial(self._lane, lane)))
        for_each(work, lambda item: item[1](), limit=PARALLEL_LIMIT, label=lambda item: item[0])

    def _lane(self, steps: list[Step]) -> None:
        for step in steps:
            self._run_step(step)

    def _manager_lane(self, lanes: Lanes) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        labels: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tvdeploy-label") as side:
            for join in lanes.managers:
                self._run_step(join)  # raises: no further manager joins
                for label in lanes.after_manager.get(join.node or "", []):
                    labels.append(side.submit(self._run_step, label))
            for fut in labels:
                fut.result()

    def _run_step(self, step: Step) -> None:
        from tvdeploy.audit.recorder import record

        handler = getattr(self, step.kind.replace("-", "_"))
        self.reporter.info(f"swarm: {step.describe()}")
        objects = [{"type": "node", "name": step.node}] if step.node else []
        if step.kind == "network-create":
            objects = [{"type": "network", "name": str(step.detail["name"])}]
        if step.kind in _DROPS_MANAGER:
            self._cached = None
        started = time.monotonic()
        try:
            handler(step)
        except TvdeployError as exc:
            record(self.site, f"swarm.{step.kind}", objects=objects, outcome="failure", error=exc.message)
            raise
        except Exception as exc:
            message = _api_message(exc)
            record(self.site, f"swarm.{step.kind}", objects=objects, outcome="failure", error=message)
            raise TvdeployError(f"swarm {step.describe()}: {message}") from None
        log.debug("swarm %s took %.2f s", step.describe(), time.monotonic() - started)
        record(self.site, f"swarm.{step.kind}", objects=objects)
        if step.kind in _DROPS_MANAGER:
            self._cached = None


@dataclass(frozen=True)
class Lanes:
    managers: list[Step]  # join-manager steps in plan order: one at a time
    after_manager: dict[str, list[Step]]  # labels of joining managers, each run after its join
    others: list[list[Step]]  # each lane in order; these lanes run beside the managers' lane


def formation_lanes(steps: list[Step]) -> Lanes:
    """Split a run of formation steps (FORMATION_KINDS, after any init) into lanes. Every step
    lands in exactly one lane; a label never runs before the join of its node."""
    joining = {s.node for s in steps if s.kind in ("join-manager", "join-worker")}
    managers = [s for s in steps if s.kind == "join-manager"]
    manager_nodes = {s.node for s in managers}
    after: dict[str, list[Step]] = {}
    others: list[list[Step]] = []
    for s in steps:
        if s.kind == "label" and s.node in manager_nodes:
            after.setdefault(s.node or "", []).append(s)
        elif s.kind == "join-worker":
            others.append([s] + [x for x in steps if x.kind == "label" and x.node == s.node])
        elif s.kind == "label" and s.node not in joining:
            others.append([s])
    networks = [s for s in steps if s.kind == "network-create"]
    if networks:
        others.append(networks)  # one lane: created in plan order
    return Lanes(managers, after, others)


def _groups(steps: list[Step]) -> list[list[Step]]:
    """Consecutive formation steps form one group; every other step is a group of its own."""
    out: list[list[Step]] = []
    for step in steps:
        if out and step.kind in FORMATION_KINDS and out[-1][0].kind in FORMATION_KINDS:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def _batches(steps: list[Step]) -> list[list[Step]]:
    """Consecutive steps of one parallel-safe kind form a batch; any other step is alone."""
    out: list[list[Step]] = []
    for step in steps:
        if out and step.kind in PARALLEL_KINDS and out[-1][0].kind == step.kind:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def _api_message(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).splitlines()[0][:300]
