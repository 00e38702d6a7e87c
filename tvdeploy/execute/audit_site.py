"""The site's copies of the audit log, over SSH (tvdeploy.audit.site_copy has the rules).

- ``replicate(site)``: after a command that recorded, append to each manager's copy what it
  lacks (the CLI calls it once per command; a failure is a warning, the next command catches up).
- ``fetch(site)``: every manager's copy (log and checkpoints), or the error that kept it.
- ``verify_site(site, public_key)``: the local log and each copy verified against the key, and
  the records missing on any side.

Only managers whose SSH host key is already pinned in ``ssh.known_hosts`` are asked: this never
trusts a new host (that stays a decision with its own audit record, tvdeploy.execute.ssh_pool).
"""

from __future__ import annotations

import copy
import logging
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit import site_copy
from tvdeploy.audit.log import checkpoints_path
from tvdeploy.audit.recorder import site_log_path
from tvdeploy.errors import ConnectionFailed, TvdeployError
from tvdeploy.parallel import for_each

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tvdeploy.config.site import Node, Site
    from tvdeploy.connectors.ssh import SSHConnection, SSHPool

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0


@dataclass
class Copy:
    node: str
    path: str
    log: bytes | None = None
    checkpoints: bytes | None = None
    error: str = ""


@dataclass
class SiteLog:
    """Where a command reads the site's log from: the local file, or the best site copy."""

    source: str  # "local" or "node NAME"
    log_path: Path
    checkpoints_path: Path | None
    copies: list[Copy] = field(default_factory=list)
    tmp: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def pinned_nodes(site: Site, managers_only: bool = False) -> list[Node]:
    """Nodes whose SSH host key is pinned already (nothing else is asked)."""
    from tvdeploy.connectors.ssh import KnownHosts, hostkey_name

    if not site.ssh.known_hosts.exists():
        return []
    try:
        known = KnownHosts(site.ssh.known_hosts)
    except TvdeployError:
        return []
    nodes = site.managers if managers_only else site.nodes
    return [n for n in nodes if known.lookup(hostkey_name(str(n.address), site.ssh.port))]


def pinned_managers(site: Site) -> list[Node]:
    return pinned_nodes(site, managers_only=True)


def open_ssh(site: Site) -> SSHPool:
    """SSH connections for the audit copies: short connect timeout, never a new host key."""
    from tvdeploy.connectors.ssh import SSHPool

    return SSHPool(site, connect_timeout=CONNECT_TIMEOUT, command_timeout=60.0)


@contextmanager
def _borrowed(site: Site, pool: SSHPool | None) -> Iterator[SSHPool]:
    """*pool* as it is (its owner closes it), or a new one closed on exit."""
    if pool is not None:
        yield pool
        return
    with open_ssh(site) as own:
        yield own


def _local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _replicate_one(conn: SSHConnection, files: list[tuple[str, bytes]]) -> list[str]:
    remote = site_copy.parse_probe(conn.run(site_copy.probe_script(tuple(p for p, _ in files))).stdout, len(files))
    problems = []
    for (path, data), state in zip(files, remote, strict=True):
        try:
            extra = site_copy.to_append(data, state)
        except site_copy.Diverged as exc:
            problems.append(f"node {conn.node}: {path}: the site's copy is not a prefix of the local file ({exc}); "
                            "left as it is (tvdeploy audit verify SITE shows the records)")
            continue
        if extra:
            conn.run(site_copy.append_script(path, state.size), input=extra)
    return problems


def replicate(site: Site, pool: SSHPool | None = None) -> list[str]:
    """Append the local log and checkpoints to every pinned manager's copy; the problems, one
    line each (an unreachable manager, a copy that diverged). *pool*: connections the command
    has open already (else new ones, closed at the end)."""
    log_path = site_log_path(site)
    data = _local(log_path)
    if not data:
        return []
    managers = pinned_managers(site)
    if not managers:
        log.debug("audit: no manager with a pinned host key; the site keeps no copy yet")
        return []
    rlog, rcps = site_copy.remote_paths(site.site.name)
    files = [(rlog, data), (rcps, _local(checkpoints_path(log_path)))]
    problems: list[str] = []
    with _borrowed(site, pool) as conns:
        def one(node: Node) -> list[str]:
            try:
                return _replicate_one(conns.get(node.name), files)
            except TvdeployError as exc:
                return [f"{exc.message}: the site's copy of the audit log was not updated "
                        "(the next command catches up)"]

        for found in for_each(managers, one):
            problems += found
    return problems


def _fetch_one(conn: SSHConnection, paths: tuple[str, str]) -> tuple[bytes | None, bytes | None]:
    out: list[bytes | None] = []
    for path in paths:
        q = shlex.quote(path)
        data, err, code = conn.exec_raw(f"if [ -f {q} ]; then head -c {site_copy.MAX_COPY} {q}; else exit 4; fi")
        if code == 4:
            out.append(None)
        elif code != 0:
            raise ConnectionFailed(f"node {conn.node}: cannot read {path}: {err.decode('utf-8', 'replace')[:200]}")
        else:
            out.append(data)
    return out[0], out[1]


def _probe_same(conn: SSHConnection, paths: tuple[str, str], local: tuple[bytes, bytes]) -> bool:
    """True when the copy is byte-identical to the local files (one round trip, nothing moved)."""
    import hashlib

    remote = site_copy.parse_probe(conn.run(site_copy.probe_script(paths)).stdout, 2)
    return all(r.sha256 == hashlib.sha256(data).hexdigest() and r.size == len(data)
               for r, data in zip(remote, local, strict=True))


def fetch(site: Site, compare_local: bool = False, pool: SSHPool | None = None) -> list[Copy]:
    """Every pinned manager's copy, read in parallel; a manager that cannot be read has ``error``.
    *compare_local*: a copy whose size and SHA-256 match the local files is not transferred
    (it is the local bytes)."""
    paths = site_copy.remote_paths(site.site.name)
    managers = pinned_managers(site)
    local_log = site_log_path(site)
    local = (_local(local_log), _local(checkpoints_path(local_log))) if compare_local and local_log.exists() else None
    with _borrowed(site, pool) as conns:
        def one(node: Node) -> Copy:
            copy = Copy(node.name, paths[0])
            try:
                if local is not None and _probe_same(conns.get(node.name), paths, local):
                    copy.log, copy.checkpoints = local[0], local[1] or None
                    return copy
                copy.log, copy.checkpoints = _fetch_one(conns.get(node.name), paths)
                if copy.log is None:
                    copy.error = f"node {node.name}: {paths[0]}: no copy of the audit log"
            except TvdeployError as exc:
                copy.error = exc.message
            return copy

        return for_each(managers, one)


def open_site_log(site: Site, copies: list[Copy] | None = None) -> SiteLog:
    """The local log when it exists, else the longest readable copy on the site (written to a
    private temporary folder so the file-based readers and the verifier can use it)."""
    local = site_log_path(site)
    if local.exists():
        cps = checkpoints_path(local)
        return SiteLog("local", local, cps if cps.exists() else None, copies or [])
    copies = fetch(site) if copies is None else copies
    readable = [c for c in copies if c.log is not None]
    if not readable:
        why = "; ".join(c.error for c in copies) or "no manager with a pinned SSH host key"
        raise TvdeployError(f"{local}: no local audit log, and no copy on the site ({why})")
    best = max(readable, key=lambda c: len(site_copy.side_of(c.node, c.log or b"").lines))
    tmp = tempfile.TemporaryDirectory(prefix="tvdeploy-audit-")
    path = Path(tmp.name) / "audit.log"
    path.write_bytes(best.log or b"")
    cps_path = None
    if best.checkpoints is not None:
        cps_path = checkpoints_path(path)
        cps_path.write_bytes(best.checkpoints)
    return SiteLog(f"node {best.node}", path, cps_path, copies, tmp)


def verify_site(site: Site, public_key: Ed25519PublicKey, copies: list[Copy] | None = None) -> dict[str, Any]:
    """The local log and every site copy verified against *public_key*, and the gaps between them."""
    from tvdeploy.audit.verify import verify_log

    local = site_log_path(site)
    copies = fetch(site, compare_local=True) if copies is None else copies
    sides: list[site_copy.Side] = []
    doc: dict[str, Any] = {"site": site.site.name, "local": None, "copies": []}
    local_bytes: tuple[bytes, bytes | None] | None = None
    if local.exists():
        cps = checkpoints_path(local)
        doc["local"] = verify_log(local, public_key, cps if cps.exists() else None).document()
        local_bytes = (local.read_bytes(), cps.read_bytes() if cps.exists() else None)
        sides.append(site_copy.side_of("local", local_bytes[0]))
    with tempfile.TemporaryDirectory(prefix="tvdeploy-audit-") as tmp:
        for c in copies:
            entry: dict[str, Any] = {"node": c.node, "path": c.path, "error": c.error or None}
            if c.log is not None:
                if local_bytes is not None and (c.log, c.checkpoints) == local_bytes:
                    result = copy.deepcopy(doc["local"])  # the same bytes verify the same way
                else:
                    path = Path(tmp) / f"{c.node}.log"
                    path.write_bytes(c.log)
                    cps_path = None
                    if c.checkpoints is not None:
                        cps_path = checkpoints_path(path)
                        cps_path.write_bytes(c.checkpoints)
                    result = verify_log(path, public_key, cps_path).document()
                result["log"] = f"node {c.node}:{c.path}"
                if result["first_bad"]:
                    result["first_bad"]["file"] = f"node {c.node}:{c.path}"
                entry["verify"] = result
                sides.append(site_copy.side_of(f"node {c.node}", c.log))
            doc["copies"].append(entry)
    gaps = site_copy.compare(sides)
    doc["gaps"] = [g.to_json() for g in gaps]
    doc["problems"] = problems(doc)
    doc["valid"] = not doc["problems"]
    return doc


def problems(doc: dict[str, Any]) -> list[str]:
    """One line per problem in a ``verify_site`` document, the worst first."""
    out = []
    local = doc.get("local")
    if local is not None and local["first_bad"]:
        b = local["first_bad"]
        out.append(f"{b['file']}: line {b['line']} (seq {b['seq']}): {b['reason']}")
    if not doc.get("copies"):
        out.append("site: no manager holds a copy of the audit log (or none has a pinned SSH host key)")
    for c in doc.get("copies", []):
        v = c.get("verify")
        if v is None:
            out.append(c["error"] or f"node {c['node']}: no copy")
        elif v["first_bad"]:
            b = v["first_bad"]
            out.append(f"{b['file']}: line {b['line']} (seq {b['seq']}): {b['reason']}")
    out += [g["message"] for g in doc.get("gaps", [])]
    return out


def restore(site: Site, public_key: Ed25519PublicKey) -> tuple[str, int]:
    """A new operator machine (the old one lost): copy the longest site copy that verifies against
    *public_key* to the local log path, so the chain goes on where the site's copies end.
    Returns (node, records). Refuses when a local log exists."""
    from tvdeploy import state
    from tvdeploy.audit.verify import verify_log
    from tvdeploy.errors import RefusedError, VerificationError

    local = site_log_path(site)
    if local.exists():
        raise RefusedError(f"{local}: a local audit log exists; restore only fills a missing one")
    copies = [c for c in fetch(site) if c.log is not None]
    if not copies:
        raise TvdeployError(f"site {site.site.name}: no manager holds a readable copy of the audit log")
    good: list[tuple[int, Copy]] = []
    reasons = []
    with tempfile.TemporaryDirectory(prefix="tvdeploy-audit-") as tmp:
        for c in copies:
            path = Path(tmp) / f"{c.node}.log"
            path.write_bytes(c.log or b"")
            cps = None
            if c.checkpoints is not None:
                cps = checkpoints_path(path)
                cps.write_bytes(c.checkpoints)
            result = verify_log(path, public_key, cps)
            if result.valid:
                good.append((result.records, c))
            else:
                bad = result.first_bad
                reasons.append(f"node {c.node}: seq {bad.seq if bad else '?'}: {bad.reason if bad else ''}")
    if not good:
        raise VerificationError(f"site {site.site.name}: no copy of the audit log verifies with the key: "
                                + "; ".join(reasons))
    records, best = max(good, key=lambda pair: pair[0])
    if best.checkpoints is not None:
        state.write_atomic(checkpoints_path(local), best.checkpoints, mode=0o600)
    state.write_atomic(local, best.log or b"", mode=0o600)
    return best.node, records
