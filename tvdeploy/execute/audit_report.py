"""``tvdeploy audit report``: read the site's facts and the verified audit log, build the report
(tvdeploy.audit.report_model), write report.html, report.json (and report.pdf) into a folder, each
with a detached signature by the operator key, and record that a report was made.

Facts are read in parallel, each on its own: one that cannot be read (vCenter down, a node
unreachable) leaves its section marked "not read" and the rest of the report intact. Nothing
here changes the site. Secret values the process resolved (the vCenter password) are masked in
the document, and a document that still looks like it holds a secret is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import __version__, state
from tvdeploy.audit import report_model, report_render, report_sign
from tvdeploy.errors import TvdeployError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool

log = logging.getLogger(__name__)

SWARM_NODE_CERT = "/var/lib/docker/swarm/certificates/swarm-node.crt"


@dataclass
class ReportResult:
    directory: Path
    files: dict[str, str]  # name -> sha256
    document: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # the site's copies that could not be updated


def _attempt(fn: Callable[[], Any]) -> Any:
    """The fact, or the one-line reason it could not be read."""
    try:
        return fn()
    except TvdeployError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - a fact that cannot be read is shown, never a crash
        log.debug("report fact failed", exc_info=True)
        return f"{type(exc).__name__}: {str(exc)[:300]}"


# --- facts --------------------------------------------------------------------------------------

def _vms(site: Site) -> list[dict[str, Any]]:
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.facts.vms import gather

    if site.vcenter is None:
        raise TvdeployError("no vcenter section in the site file")
    with connect(site) as session:
        facts = gather(session, session.placement())
    return [{"name": v.name, "cpus": v.cpus, "memory_mb": v.memory_mb, "power": v.power, "ip": v.ip}
            for v in facts if not v.template]


def _swarm(site: Site) -> dict[str, Any]:
    from tvdeploy.execute.swarm_session import Clients, open_clients
    from tvdeploy.facts.swarm import gather_swarm_facts
    from tvdeploy.plan.swarm_status import declared_name

    with Clients() as clients:
        open_clients(site, clients)
        if not clients:
            raise TvdeployError("no operator client certificate (tls apply / swarm bootstrap first)")
        facts = gather_swarm_facts(site, clients)
    if facts.cluster_id is None:
        raise TvdeployError("no active swarm manager answers")
    members = [{"name": declared_name(site, m), "role": m.role, "state": m.state, "availability": m.availability,
                "engine": m.engine or None, "leader": m.leader} for m in facts.members]
    return {"cluster_id": facts.cluster_id, "autolock": facts.autolock,
            "cert_expiry_hours": facts.cert_expiry_hours, "members": members}


def _tls_expiry(site: Site) -> dict[str, str | None]:
    from tvdeploy.execute.swarm_status import cert_expiry

    return cert_expiry(site)


def _swarm_certs(site: Site, pool: SSHPool) -> dict[str, str | None]:
    """Each node's swarm node certificate expiry (read over SSH; swarm rotates it itself)."""
    from cryptography import x509

    from tvdeploy.execute.audit_site import pinned_nodes
    from tvdeploy.parallel import for_each

    pinned = {n.name for n in pinned_nodes(site)}
    if not pinned:
        raise TvdeployError(f"{site.ssh.known_hosts}: no node's SSH host key is pinned yet")

    def one(name: str) -> str | None:
        if name not in pinned:  # never a new trust decision from a report
            return None
        try:
            pem = pool.get(name).get_file(SWARM_NODE_CERT)
            cert = x509.load_pem_x509_certificate(pem)
        except (TvdeployError, ValueError):
            return None
        return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    names = [n.name for n in site.nodes]
    return dict(zip(names, for_each(names, one), strict=True))


def _site_ca(site: Site) -> dict[str, Any]:
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.pki.certinfo import load_cert_pem, sha256_fingerprint

    path = pki_paths(site).cert
    if not path.is_file():
        raise TvdeployError(f"{path}: no site CA yet")
    cert = load_cert_pem(path.read_bytes(), str(path))
    return {"fingerprint": sha256_fingerprint(cert), "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _trust_root(path: Path | None) -> dict[str, Any] | None:
    from tvdeploy.bundle import trust

    if path is None:
        return None
    chain = trust.load_chain(path)
    root = trust.verify_chain(chain, str(path))
    return {"file": str(path), "version": root.version, "expires": trust.format_time(root.expires),
            "threshold": root.threshold,
            "signers": [{"key_id": s.key_id, "roles": list(s.roles),
                         "expires": trust.format_time(s.expires) if s.expires else None}
                        for s in root.signers.values()]}


def _waivers(site: Site, now: datetime) -> list[dict[str, Any]]:
    from tvdeploy.bundle.trust import format_time, parse_time
    from tvdeploy.config.yamlsafe import YamlError, load_yaml_file
    from tvdeploy.policy import waivers

    approvers = waivers.approver_keys(site)
    rows = []
    for p in site.policies.waivers:
        path = Path(p)
        try:
            data = load_yaml_file(path).data
            w, _sig = waivers.parse(path, data)
            counted, why = waivers.judge(path, data, approvers, now)
            expires = parse_time(w["expires"])
        except (YamlError, TvdeployError, ValueError) as exc:
            rows.append({"file": str(path), "rule": "?", "scope": "?", "approver": "?", "expires": "?",
                         "justification": "", "state": "unreadable", "reason": getattr(exc, "message", str(exc))})
            continue
        (scope, value), = w["scope"].items()
        state_ = report_model.waiver_state(expires, now, counted is not None)
        rows.append({"file": str(path), "rule": w["rule"], "scope": f"{scope}: {value}", "approver": w["approver"],
                     "expires": format_time(expires), "justification": w["justification"], "state": state_,
                     "reason": "" if state_ != "not counted" else why})
    return rows


def _log(site: Site, public_key: Ed25519PublicKey, copies: Any) -> dict[str, Any]:
    from tvdeploy.audit import log as audit_log
    from tvdeploy.audit.show import read_records
    from tvdeploy.audit.verify import verify_log
    from tvdeploy.execute.audit_site import open_site_log

    src = open_site_log(site, copies if isinstance(copies, list) else [])
    try:
        result = verify_log(src.log_path, public_key, src.checkpoints_path).document()
        listing = read_records(src.log_path)
        head = None
        if listing.records:
            with src.log_path.open("rb") as fh:
                line = audit_log.last_line(fh.fileno(), src.log_path)
            if line is not None:
                head = {"seq": json.loads(line).get("seq"), "hash": audit_log.line_hash(line)}
        checkpoint = None
        if src.checkpoints_path is not None and src.checkpoints_path.exists():
            lines = [ln for ln in src.checkpoints_path.read_bytes().split(b"\n") if ln]
            if lines:
                cp = json.loads(lines[-1])
                checkpoint = {k: cp.get(k) for k in ("seq", "chain_hash", "time", "key_id")}
        return {"source": src.source if src.source == "local" else f"the site's copy on {src.source} "
                "(no local log)", "verify": result, "records": listing.records, "head": head,
                "checkpoint": checkpoint}
    finally:
        src.close()


def gather(site: Site, site_file: Path, *, since: str | None, trust_path: Path | None, public_key: Ed25519PublicKey,
           key_id: str, key_name: str, pool: SSHPool) -> tuple[report_model.ReportFacts, dict[str, float]]:
    from tvdeploy.execute import audit_site
    from tvdeploy.execute.swarm_session import client_cert
    from tvdeploy.keys.store import key_names
    from tvdeploy.policy import last
    from tvdeploy.release import views

    now = datetime.now(UTC)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            t0 = time.monotonic()
            try:
                return _attempt(fn)
            finally:
                timings[name] = round(time.monotonic() - t0, 3)
        return run

    def api(fn: Callable[[Site], Any]) -> Callable[[], Any]:
        def run() -> Any:
            if client_cert(site) is None:  # nothing to connect with: ask no node
                raise TvdeployError("no operator client certificate (tls apply / swarm bootstrap first)")
            return fn(site)
        return run

    jobs = {
        "vms": lambda: _vms(site), "swarm": api(_swarm), "tls_expiry": api(_tls_expiry),
        "swarm_cert_expiry": lambda: _swarm_certs(site, pool), "stack": api(views.observe_stack),
        "copies": lambda: audit_site.fetch(site, compare_local=True, pool=pool),
    }
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="tvdeploy-report") as threads:
        futures = {name: threads.submit(timed(name, fn)) for name, fn in jobs.items()}
        got = {name: fut.result() for name, fut in futures.items()}
    copies = got.pop("copies")
    stack = got.pop("stack")
    views_of: dict[str, Callable[[Site, Any], Any]] = {
        "status": views.status, "releases": views.list_releases, "history": views.history}
    for name, view in views_of.items():
        got[name] = stack if isinstance(stack, str) else _attempt(partial(view, site, stack))
    site_copies = timed("site_copies", lambda: copies if isinstance(copies, str)
                        else audit_site.verify_site(site, public_key, copies))()
    facts = report_model.ReportFacts(
        site=site.site.name, site_file=str(site_file), generated=_utc(now), operator_key_id=key_id,
        operator_key_name=key_name, version=__version__, since=since,
        node_decl=[{"name": n.name, "role": n.role, "zone": n.zone, "address": str(n.address)} for n in site.nodes],
        site_ca=_attempt(lambda: _site_ca(site)), trust_root=_attempt(lambda: _trust_root(trust_path)),
        key_names=_attempt(key_names), policy=_attempt(lambda: last.load(site)),
        waivers=_attempt(lambda: _waivers(site, now)),
        log=timed("log", lambda: _log(site, public_key, copies))(), site_copies=site_copies, **got,
    )
    if isinstance(facts.key_names, str):
        facts.key_names = {}
    return facts, timings


def _utc(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- secrets ------------------------------------------------------------------------------------

def learn_site_secrets(site: Site) -> None:
    """Resolve every secret reference of the site file (vCenter password, CA passphrase, stack
    secrets) so the scrub knows their values; one that cannot be resolved cannot leak either."""
    from tvdeploy.config.secrets import resolve_secret

    refs = {"pki.ca_passphrase": site.pki.ca_passphrase,
            **{f"stack.secrets.{k}": v for k, v in site.stack.secrets.items()}}
    if site.vcenter is not None:
        refs["vcenter.password"] = site.vcenter.password
    for key_path, ref in refs.items():
        if ref:
            try:
                resolve_secret(str(ref), key_path)
            except TvdeployError:
                log.debug("%s: not resolvable here", key_path)


def scrub(doc: Any) -> Any:
    """*doc* with every secret value this process resolved masked; refuses one that still looks
    like a secret (a private key, a Secret object)."""
    from tvdeploy.audit.secretscan import find_secret, redact

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return redact(v)
        if isinstance(v, dict):
            return {redact(str(k)): walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    clean = walk(doc)
    leak = find_secret(clean)
    if leak:
        raise TvdeployError(f"audit report: refusing to write the report: {leak} holds a secret value")
    return clean


# --- writing ------------------------------------------------------------------------------------

def write_report(site: Site, site_file: Path, out_dir: Path, *, pdf: bool, since: str | None,
                 trust_path: Path | None) -> ReportResult:
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.errors import InputFileError
    from tvdeploy.execute.audit_site import open_ssh

    if out_dir.exists() and not out_dir.is_dir():  # before anything is read
        raise InputFileError(f"{out_dir}: exists and is not a folder; give -o a folder for the report")
    if pdf:
        _check_pdf()  # before anything is read: a missing extra is said at once
    key, kid = signing_key()
    with open_ssh(site) as pool:  # one set of SSH connections for the facts, the copies and the record
        return _write(site, site_file, out_dir, pdf=pdf, since=since, trust_path=trust_path, key=key, kid=kid,
                      pool=pool)


def _write(site: Site, site_file: Path, out_dir: Path, *, pdf: bool, since: str | None, trust_path: Path | None,
           key: Ed25519PrivateKey, kid: str, pool: SSHPool) -> ReportResult:
    from tvdeploy.audit.recorder import forget_pending, record, site_log_path
    from tvdeploy.execute.audit_site import replicate
    from tvdeploy.keys.store import operator_key_name

    t0 = time.monotonic()
    facts, timings = gather(site, site_file, since=since, trust_path=trust_path, public_key=key.public_key(),
                            key_id=kid, key_name=operator_key_name(), pool=pool)
    t1 = time.monotonic()
    learn_site_secrets(site)
    doc = scrub(report_model.build(facts))
    files = {"report.json": report_render.render_json(doc), "report.html": report_render.render_html(doc)}
    if pdf:
        files["report.pdf"] = report_render.render_pdf(files["report.html"])
    t2 = time.monotonic()
    digests = _write_files(out_dir, files, key, kid)
    timings |= {"gather": round(t1 - t0, 3), "render": round(t2 - t1, 3), "total": round(time.monotonic() - t0, 3)}
    if site_log_path(site).exists():
        # Without the local log (a lost laptop) a record would start a second chain that the
        # site's copies could not take: the report is read-only, so nothing is recorded then.
        record(site, "audit.report", objects=[{"type": "report", "name": name, "digest": f"sha256:{d}"}
                                              for name, d in digests.items()])
        result = ReportResult(out_dir, digests, doc, timings)
        result.warnings = replicate(site, pool)  # over the open connections: the CLI need not reconnect
        forget_pending(site)
        return result
    return ReportResult(out_dir, digests, doc, timings)


def _write_files(out_dir: Path, files: dict[str, bytes], key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    """Each file and its signature, written atomically; name -> sha256."""
    from tvdeploy.errors import InputFileError

    try:
        state.ensure_dir(out_dir, 0o755)
        for name in report_sign.OPTIONAL:  # a stale PDF (and its signature) from an earlier run must go
            if name not in files:
                for stale in (out_dir / name, out_dir / f"{name}.sig"):
                    stale.unlink(missing_ok=True)
        digests = {}
        for name, data in files.items():
            state.write_atomic(out_dir / name, data, mode=0o644)
            state.write_atomic(out_dir / f"{name}.sig", report_sign.signature_doc(name, data, key, kid), mode=0o644)
            digests[name] = hashlib.sha256(data).hexdigest()
    except OSError as exc:
        raise InputFileError(f"{exc.filename or out_dir}: cannot write the report: {exc.strerror}") from None
    return digests


def _check_pdf() -> None:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as exc:
        raise TvdeployError(f"{report_render.PDF_HELP} ({type(exc).__name__}: {str(exc)[:120]})") from None
