"""Apply a TLS plan: keys made on the nodes, CSRs signed here, files staged then committed,
dockerd restarted only where the plan says so.

Per node: make the new key on the node and send back only the CSR; sign it here; stage the
certificate / CA / daemon.json / drop-in beside their final paths (``.tvdeploy-new``); *commit*:
move them into place (key and certificate together), restart dockerd, wait until its API answers
the operator certificate. Fresh nodes (no API served, not in a swarm) are staged and committed in
one command each, all in parallel (bounded). Nodes already serving an API or in a swarm are
staged in parallel but committed one at a time, so at most one node's API is down at once.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from tvdeploy.errors import ConnectionFailed, TvdeployError
from tvdeploy.facts.host import CA_PATH, CERT_PATH, DAEMON_JSON, DROPIN_PATH, KEY_PATH, HostFacts
from tvdeploy.parallel import DEFAULT_LIMIT, for_each
from tvdeploy.pki.certinfo import sha256_fingerprint
from tvdeploy.pki.issue import keygen_command
from tvdeploy.plan import tls as P

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import FileSpec, SSHConnection, SSHPool
    from tvdeploy.pki.ca import SiteCA
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGED = ".tvdeploy-new"
API_WAIT_SECONDS = 120.0
DOCKER_LOG = "/var/log/docker.log"

@dataclass
class NodeOutcome:
    node: str
    actions: list[str]
    certificate_sha256: str | None = None
    restarted: bool = False
    seconds: float = 0.0


def _q(s: str) -> str:
    return shlex.quote(s)


def make_csr_on_node(conn: SSHConnection, node: str) -> bytes:
    return conn.run(keygen_command(KEY_PATH.rsplit("/", 1)[0], KEY_PATH + STAGED, node)).stdout.encode()


def staged_files(conn: SSHConnection, site: Site, plan: P.NodePlan, ca: SiteCA | None, ca_pem: bytes,
                 now: datetime, outcome: NodeOutcome) -> list[FileSpec]:
    """Make the node's new key ON the node (only the CSR comes back), sign it, and return the
    files to stage beside their final paths. Nothing dockerd reads changes yet."""
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.connectors.ssh import FileSpec
    from tvdeploy.pki.issue import record_issued, sign_server_csr

    files: list[FileSpec] = []
    if plan.has(P.ISSUE_SERVER):
        assert ca is not None
        csr = make_csr_on_node(conn, plan.node)
        cert = sign_server_csr(ca, csr, plan.node, site.site.name, plan.names,
                               site.pki.server_cert_days, now)
        files.append(FileSpec(CERT_PATH + STAGED, cert.public_bytes(serialization.Encoding.PEM), 0o444))
        record_issued(ca, plan.node, cert)
        outcome.certificate_sha256 = sha256_fingerprint(cert)
    if plan.has(P.INSTALL_CA):
        files.append(FileSpec(CA_PATH + STAGED, ca_pem, 0o444))
    if plan.has(P.WRITE_CONFIG):
        files.append(FileSpec(DAEMON_JSON + STAGED, plan.daemon_json.encode(), 0o644))
    if plan.has(P.WRITE_DROPIN) and plan.dropin is not None:
        files.append(FileSpec(DROPIN_PATH + STAGED, plan.dropin.encode(), 0o644))
    return files


def prepare_node(conn: SSHConnection, site: Site, plan: P.NodePlan, ca: SiteCA | None, ca_pem: bytes,
                 now: datetime, commit: bool = False) -> NodeOutcome:
    """Stage every change of one node in one round trip (after the CSR's); with *commit* the
    same command also moves the files into place and restarts dockerd (fresh nodes)."""
    outcome = NodeOutcome(plan.node, [s.action for s in plan.steps])
    files = staged_files(conn, site, plan, ca, ca_pem, now, outcome)
    then = commit_script(plan) if commit else (fix_key_command() if plan.has(P.FIX_KEY_MODE) else "")
    if files or then:
        conn.put_files(files, then=then, timeout=180)
    outcome.restarted = commit and plan.has(P.RESTART)
    return outcome


def fix_key_command() -> str:
    return f"chown root:root {_q(KEY_PATH)} && chmod 0400 {_q(KEY_PATH)}"


def commit_script(plan: P.NodePlan) -> str:
    """Move staged files into place (key and certificate together), then restart if planned."""
    moves: list[str] = []
    if plan.has(P.ISSUE_SERVER):
        moves += [KEY_PATH, CERT_PATH]
    if plan.has(P.INSTALL_CA):
        moves.append(CA_PATH)
    if plan.has(P.WRITE_CONFIG):
        moves.append(DAEMON_JSON)
    if plan.has(P.WRITE_DROPIN):
        moves.append(DROPIN_PATH)
    parts = ["set -e"] + [f"mv -f {_q(p + STAGED)} {_q(p)}" for p in moves]
    if plan.has(P.FIX_KEY_MODE):
        parts.append(fix_key_command())
    if plan.has(P.RESTART):
        parts.append(restart_command(plan.init))
    return "; ".join(parts)


def restart_command(init: str) -> str:
    # stdin from /dev/null: the sysv script backgrounds dockerd with --no-close, and a daemon
    # holding the SSH channel's stdin would keep the session open.
    if init == "systemd":
        return "systemctl daemon-reload && systemctl restart docker </dev/null"
    return ("if [ -x /etc/init.d/docker ]; then /etc/init.d/docker restart </dev/null; "
            "else service docker restart </dev/null; fi")


def wait_for_api(node: str, address: str, certs_dir: object, timeout: float = API_WAIT_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll the node's API with the operator certificate until it answers (bounded)."""
    from pathlib import Path

    from tvdeploy.connectors.docker_api import ClientCert, ping

    certs = ClientCert.in_dir(Path(str(certs_dir)))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            ping(node, address, certs, timeout=5)
            return
        except ConnectionFailed as exc:
            last = exc
            sleep(0.3)
    raise ConnectionFailed(f"node {node}: Docker API did not come back within {timeout:.0f} s "
                           f"after the restart ({last.message if isinstance(last, TvdeployError) else last})")


def _audit_objects(plan: P.NodePlan, outcome: NodeOutcome) -> list[dict[str, str]]:
    objects = [{"type": "node", "name": plan.node, "actions": ",".join(outcome.actions)}]
    if outcome.certificate_sha256:
        objects.append({"type": "certificate", "node": plan.node,
                        "digest": f"sha256:{outcome.certificate_sha256}"})
    return objects


def finish_node(conn: SSHConnection, site: Site, plan: P.NodePlan, outcome: NodeOutcome,
                certs_dir: object, reporter: Reporter, start: float) -> NodeOutcome:
    """After a restart: wait until the API answers the operator certificate; audit the node."""
    from tvdeploy.audit.recorder import record

    if outcome.restarted:
        try:
            wait_for_api(plan.node, plan.address, certs_dir)
        except ConnectionFailed as exc:
            tail = conn.run(f"tail -n 3 {DOCKER_LOG} 2>/dev/null", check=False).stdout.strip()
            hint = f"; dockerd log: {tail.splitlines()[-1][:200]}" if tail else ""
            err = ConnectionFailed(exc.message + hint)
            record(site, "tls.apply", objects=_audit_objects(plan, outcome), outcome="failure",
                   error=err.message)
            raise err from None
    outcome.seconds = time.monotonic() - start
    record(site, "tls.apply", objects=_audit_objects(plan, outcome))
    reporter.info(f"node {plan.node}: {', '.join(outcome.actions)}"
                  + (f" (API back in {outcome.seconds:.1f} s)" if outcome.restarted else ""))
    reporter.event("tls.node", node=plan.node, actions=outcome.actions, restarted=outcome.restarted)
    return outcome


def _audited(site: Site, plan: P.NodePlan, outcome: NodeOutcome | None, fn: Callable[[], T]) -> T:
    """Run *fn*; a failure is audited (the node may be half-changed) and re-raised."""
    from tvdeploy.audit.recorder import record

    try:
        return fn()
    except TvdeployError as exc:
        acts = outcome or NodeOutcome(plan.node, [s.action for s in plan.steps])
        record(site, "tls.apply", objects=_audit_objects(plan, acts), outcome="failure", error=exc.message)
        raise


def commit_node(conn: SSHConnection, site: Site, plan: P.NodePlan, outcome: NodeOutcome,
                certs_dir: object, reporter: Reporter) -> NodeOutcome:
    """Commit a node prepared earlier (live nodes, one at a time)."""
    start = time.monotonic()
    _audited(site, plan, outcome, lambda: conn.run(commit_script(plan), timeout=180))
    outcome.restarted = plan.has(P.RESTART)
    return finish_node(conn, site, plan, outcome, certs_dir, reporter, start)


def ensure_operator_pki(site: Site, plan: P.TlsPlan, now: datetime, reporter: Reporter,
                        need_ca_key: bool) -> tuple[SiteCA | None, bytes]:
    """Create the CA / issue the client certificate as planned; return (CA with key or None,
    CA certificate PEM)."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.pki import ca as ca_mod
    from tvdeploy.pki.issue import issue_client_cert

    paths = ca_mod.pki_paths(site)
    ca: SiteCA | None = None
    global_actions = {s.action for s in plan.global_steps}
    if P.CREATE_CA in global_actions or P.ISSUE_CLIENT in global_actions or need_ca_key:
        ca, created = ca_mod.load_or_create_ca(site, now)
        if created:
            if site.pki.ca_passphrase is None:
                reporter.warn(f"{ca.paths.key}: pki.ca_passphrase is not set: the site CA key is "
                              "stored unencrypted")
            fp = sha256_fingerprint(ca.cert)
            reporter.info(f"created site CA {ca.paths.cert} (sha256 {fp})")
            record(site, "tls.ca.create", objects=[{"type": "ca", "name": site.site.name,
                                                    "digest": f"sha256:{fp}"}])
    if P.ISSUE_CLIENT in global_actions:
        assert ca is not None
        cert = issue_client_cert(ca, site.site.name, site.pki.client_cert_days, now)
        fp = sha256_fingerprint(cert)
        reporter.info(f"issued operator client certificate (valid {site.pki.client_cert_days} days)")
        record(site, "tls.client.issue", objects=[{"type": "certificate", "name": "operator",
                                                   "digest": f"sha256:{fp}"}])
    ca_pem = ca.cert_pem if ca is not None else paths.cert.read_bytes()
    return ca, ca_pem


def apply_tls(site: Site, plan: P.TlsPlan, pool: SSHPool, reporter: Reporter, now: datetime,
              limit: int = DEFAULT_LIMIT, on_ready: Callable[[str], None] | None = None) -> list[NodeOutcome]:
    """*on_ready(node)* is called (from a worker thread) as soon as a node's API answers with
    its new configuration, so a caller can start work on that node while the others restart."""
    from tvdeploy.pki.ca import pki_paths

    def ready(node: str) -> None:
        if on_ready is not None:
            on_ready(node)

    for w in plan.warnings:
        reporter.warn(w)
    todo = [n for n in plan.nodes if n.steps]
    need_key = any(n.has(P.ISSUE_SERVER) for n in todo)
    ca, ca_pem = ensure_operator_pki(site, plan, now, reporter, need_key)
    certs_dir = pki_paths(site).client_dir
    if not todo:
        return []
    fresh = [n for n in todo if not n.live]
    live = [n for n in todo if n.live]
    reporter.task("tls.nodes", f"configuring {len(todo)} node(s)", total=len(todo))

    def configure_fresh(n: P.NodePlan) -> NodeOutcome:
        # Nothing serves on a fresh node yet: stage, commit and restart in one go, in parallel.
        conn = pool.get(n.node)
        start = time.monotonic()
        prepared = _audited(site, n, None, lambda: prepare_node(conn, site, n, ca, ca_pem, now, commit=True))
        out = finish_node(conn, site, n, prepared, certs_dir, reporter, start)
        reporter.advance("tls.nodes")
        ready(n.node)
        return out

    def prepare_live(n: P.NodePlan) -> NodeOutcome:
        return _audited(site, n, None, lambda: prepare_node(pool.get(n.node), site, n, ca, ca_pem, now))

    done = for_each(fresh, configure_fresh, limit=limit, label=lambda n: f"node {n.node}")
    prepared = for_each(live, prepare_live, limit=limit, label=lambda n: f"node {n.node}")
    for n, outcome in zip(live, prepared, strict=True):
        # One at a time: a swarm keeps quorum, clients keep a working manager.
        done.append(commit_node(pool.get(n.node), site, n, outcome, certs_dir, reporter))
        reporter.advance("tls.nodes")
        ready(n.node)
    reporter.done("tls.nodes")
    return done


def observe(site: Site, pool: SSHPool, reporter: Reporter,
            limit: int = DEFAULT_LIMIT) -> dict[str, HostFacts]:
    """Host facts of every node (parallel, bounded); warnings (clock offset) reported once."""
    from tvdeploy.facts.host import gather

    reporter.task("tls.facts", f"reading facts of {len(site.nodes)} node(s)", total=len(site.nodes))

    def one(name: str) -> HostFacts:
        facts = gather(name, pool.get(name))
        reporter.advance("tls.facts")
        return facts

    names = [n.name for n in site.nodes]
    results = for_each(names, one, limit=limit, label=lambda n: f"node {n}")
    reporter.done("tls.facts")
    return dict(zip(names, results, strict=True))
