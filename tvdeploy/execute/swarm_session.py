"""The swarm commands' flow: observe (SSH pre-flight, TLS plan, swarm facts), plan, apply.

Kept out of the CLI so that `swarm plan`, `swarm bootstrap`, the tests and the benchmark run the
same sequence. The Docker API clients of one command live in a ``Clients`` mapping: declared nodes
by name, nodes being removed (no longer in the site file) by ``addr:<ip>``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError
from tvdeploy.facts.swarm_model import LocalSwarmFact, SwarmFacts
from tvdeploy.plan.preflight import Finding, blocking
from tvdeploy.plan.swarm import Step, SwarmPlan, plan_swarm

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.docker_api import ClientCert
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.execute.preflight import PreflightResult
    from tvdeploy.facts.host import HostFacts
    from tvdeploy.plan.tls import TlsPlan
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

MAX_PASSES = 3  # unlock-only pass, main pass, and one more if the first pass unlocked managers


@dataclass
class SwarmView:
    preflight: PreflightResult | None
    tls_plan: TlsPlan | None
    facts: SwarmFacts
    plan: SwarmPlan
    findings: list[Finding] = field(default_factory=list)


class Clients(dict[str, Any]):
    """Docker API clients of one command; closed together."""

    def close(self) -> None:
        for client in self.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
        self.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def client_cert(site: Site) -> ClientCert | None:
    """The operator's client certificate folder, or None before the first `tls apply`."""
    from tvdeploy.connectors.docker_api import ClientCert
    from tvdeploy.pki.ca import pki_paths

    certs = ClientCert.in_dir(pki_paths(site).client_dir)
    return certs if all(p.is_file() for p in (certs.ca, certs.cert, certs.key)) else None


def open_clients(site: Site, clients: Clients | None = None) -> Clients:
    """One client per declared node (no request is sent until the first call)."""
    from tvdeploy.connectors.docker_api import connect

    clients = clients if clients is not None else Clients()
    clients.close()
    certs = client_cert(site)
    if certs is None:
        return clients
    for node in site.nodes:
        clients[node.name] = connect(node.name, str(node.address), certs)
    return clients


def add_removal_clients(site: Site, facts: SwarmFacts, clients: Clients) -> None:
    """Clients for swarm members that the site file no longer declares, keyed addr:<ip>."""
    from tvdeploy.connectors.docker_api import connect

    certs = client_cert(site)
    declared = {str(n.address) for n in site.nodes} | {n.name for n in site.nodes}
    for m in facts.members:
        if certs is None or not m.address or m.address in declared or m.hostname in declared:
            continue
        clients.setdefault(f"addr:{m.address}", connect(m.hostname or m.address, m.address, certs))


def fallback_from_hosts(host_facts: dict[str, HostFacts]) -> dict[str, LocalSwarmFact]:
    """Each node's swarm state as docker info over SSH saw it (used until its TLS API answers)."""
    return {
        name: LocalSwarmFact(f.swarm.local_state if f.swarm.running else "unreachable", node_id=f.swarm.node_id or None)
        for name, f in host_facts.items()
    }


def observe_swarm(site: Site, clients: Clients, host_facts: dict[str, HostFacts] | None = None) -> SwarmFacts:
    from dataclasses import replace

    from tvdeploy.execute.unlock_escrow import escrow_path
    from tvdeploy.facts.swarm import gather_swarm_facts

    facts = gather_swarm_facts(site, clients, fallback_from_hosts(host_facts or {}))
    add_removal_clients(site, facts, clients)
    if facts.cluster_id is not None:
        facts = replace(facts, escrowed=escrow_path(site).is_file())
    return facts


def plan_tls_from(site: Site, host_facts: dict[str, HostFacts]) -> TlsPlan:
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.pki.certinfo import utcnow
    from tvdeploy.pki.local import read_local_pki
    from tvdeploy.plan.tls import plan_tls

    return plan_tls(site, host_facts, read_local_pki(pki_paths(site)), utcnow())


def survey(site: Site, pool: SSHPool, clients: Clients, reporter: Reporter) -> SwarmView:
    """Everything `swarm plan` shows: pre-flight findings, pending TLS changes, swarm steps."""
    from tvdeploy.execute.preflight import run_preflight

    pre = run_preflight(site, pool, reporter)
    tls = None
    if not pre.unreachable:
        try:
            tls = plan_tls_from(site, pre.host_facts)
        except RefusedError as exc:  # Docker missing or a broken daemon.json: also a finding
            pre.findings.append(Finding("*", "tls", "error", exc.message))
    open_clients(site, clients)
    facts = observe_swarm(site, clients, pre.host_facts)
    return SwarmView(pre, tls, facts, plan_swarm(site, facts), pre.findings)


def finding_line(f: Finding) -> str:
    named = f.node == "*" or f.message.startswith(f"node {f.node} ")  # SSH errors name it already
    where = "" if named else f"node {f.node}: "
    return f"{where}{f.message}"


def refuse_on_findings(findings: list[Finding]) -> None:
    errors = blocking(findings)
    if errors:
        lines = [finding_line(f) for f in errors]
        raise RefusedError(f"pre-flight: {lines[0]}", details=lines[1:])


def refuse_on_problems(plan: SwarmPlan) -> None:
    if plan.problems:
        raise RefusedError(f"swarm plan: {plan.problems[0]}", details=plan.problems[1:])


def apply_swarm(
    site: Site, clients: Clients, reporter: Reporter, host_facts: dict[str, HostFacts] | None = None
) -> int:
    """Observe, plan, run; again while the previous pass could only unlock. Returns the number
    of steps run."""
    from tvdeploy.execute.swarm import SwarmExecutor

    total = 0
    for _ in range(MAX_PASSES):
        facts = observe_swarm(site, clients, host_facts)
        plan = plan_swarm(site, facts)
        if not plan.steps:
            return total
        only_unlock = all(s.kind == "unlock" for s in plan.steps)
        if not only_unlock:
            refuse_on_problems(plan)
        SwarmExecutor(site, clients, reporter).run(plan)
        total += len(plan.steps)
        if not only_unlock:
            return total
        host_facts = None  # the unlocked managers now answer over TLS
    return total


def early_init_step(site: Site, view: SwarmView) -> Step | None:
    """The swarm init that a bootstrap may run while TLS is still being applied to the other
    nodes: only when a new swarm is formed (the plan starts with init and has no problems) and
    the TLS plan restarts the init node's dockerd (so its readiness is signalled)."""
    tls, plan = view.tls_plan, view.plan
    if tls is None or not tls.changes or plan.problems or not plan.steps or plan.steps[0].kind != "init":
        return None
    step = plan.steps[0]
    if not any(n.node == step.node and n.steps for n in tls.nodes):
        return None
    return step


class EarlyInit:
    """Runs the init step on the first manager as soon as its TLS API answers, beside the other
    nodes' dockerd restarts (which take seconds), instead of after all of them. The joins, labels
    and networks still come after the whole TLS apply, planned from fresh facts; a failed init
    is raised (and audited) by ``finish`` like any step."""

    def __init__(self, site: Site, step: Step, reporter: Reporter) -> None:
        self.site, self.step, self.reporter = site, step, reporter
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def ready(self, node: str) -> None:
        """apply_tls's on_ready callback (a worker thread): start the init, never raise."""
        with self._lock:
            if node != self.step.node or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="tvdeploy-swarm-init", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from tvdeploy.connectors.docker_api import connect
        from tvdeploy.execute.swarm import SwarmExecutor

        clients = Clients()
        try:
            certs = client_cert(self.site)
            if certs is None:  # cannot happen after tls apply; the normal pass would init
                return
            node = self.site.node(self.step.node or "")
            clients[node.name] = connect(node.name, str(node.address), certs)
            SwarmExecutor(self.site, clients, self.reporter).run(SwarmPlan([self.step]))
        except BaseException as exc:  # noqa: BLE001 - handed to finish() on the main thread
            self._error = exc
        finally:
            clients.close()

    def join(self) -> bool:
        """Wait for the init if it started; True when it did."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
        return thread is not None

    def finish(self) -> int:
        """Wait for the init (if it started); raise its error. Returns the steps run (0 or 1)."""
        if not self.join():
            return 0
        if self._error is not None:
            raise self._error
        return 1
