"""Record one event in the audit log: the call every mutating command makes.

    record(site, "vm.create", objects=[{"type": "vm", "name": "tv-mgr-1"}])
    record_global("key.generate", objects=[{"type": "key", "name": "operator", "key_id": ...}])

Each record is signed with the operator key (loaded once per process: one passphrase prompt per
command). ``record`` writes to the site's state folder, ``record_global`` to the operator home.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import __version__, state
from tvdeploy.audit import checkpoint
from tvdeploy.audit import log as audit_log
from tvdeploy.audit.canonical import CanonicalError, canonical_json
from tvdeploy.audit.secretscan import find_secret, redact
from tvdeploy.audit.signing import sign
from tvdeploy.errors import TvdeployError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.config.secrets import Secret
    from tvdeploy.config.site import Site

log = logging.getLogger(__name__)

LOG_NAME = "audit.log"
EVENT = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
OUTCOME = re.compile(r"^[a-z][a-z_-]{0,31}$")
MAX_OBJECTS = 10_000
MAX_ERROR = 4096

# (private key path, inode, mtime) -> (key, key id): one load, one prompt per process.
_KEY_CACHE: dict[tuple[str, int, int], tuple[Ed25519PrivateKey, str]] = {}
# Sites whose log got a record in this process: the CLI copies them to the site afterwards.
_PENDING: dict[str, Site] = {}


def site_log_path(site: Site) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / "audit" / LOG_NAME


def global_log_path() -> Path:
    return state.home() / "audit" / LOG_NAME


def utc_now() -> str:
    """UTC time in ms, ISO 8601 with a Z: 2026-11-28T07:35:01.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def clear_key_cache() -> None:
    """Forget loaded keys (tests running several commands in one process)."""
    _KEY_CACHE.clear()


def signing_key(passphrase: Secret | None = None) -> tuple[Ed25519PrivateKey, str]:
    """The operator key and its id, loaded once per process."""
    from tvdeploy.keys.store import key_id, load_private_key, operator_key_name

    name = operator_key_name()
    priv_path = state.keys_dir() / f"{name}.key"
    try:
        st = priv_path.stat()
    except FileNotFoundError:
        raise TvdeployError(
            f"no operator key {name!r} to sign the audit log; create it with "
            f"'tvdeploy keys generate {name}'"
        ) from None
    cache_key = (str(priv_path), st.st_ino, st.st_mtime_ns)
    if cache_key not in _KEY_CACHE:
        key = load_private_key(name, passphrase)
        _KEY_CACHE[cache_key] = (key, key_id(key.public_key()))
    return _KEY_CACHE[cache_key]


def _clean_objects(objects: list[dict[str, str]] | None, event: str) -> list[dict[str, Any]]:
    objects = list(objects or [])
    if len(objects) > MAX_OBJECTS:
        raise TvdeployError(f"audit: event {event}: too many objects ({len(objects)})")
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise TvdeployError(f"audit: event {event}: objects[{i}] is not a mapping")
    return objects


def build_record(head: audit_log.Head, *, event: str, site: str | None,
                 objects: list[dict[str, Any]], outcome: str, error: str | None,
                 key: Ed25519PrivateKey, key_id: str, time: str) -> bytes:
    doc: dict[str, Any] = {
        "seq": head.seq + 1,
        "prev_hash": head.hash,
        "time": time,
        "event": event,
        "actor": {"os_user": _os_user(), "key_id": key_id},
        "version": __version__,
        "site": site,
        "objects": objects,
        "outcome": outcome,
        "error": error,
    }
    return canonical_json(sign(key, doc))


def append_record(path: Path, *, event: str, site: str | None,
                  objects: list[dict[str, str]] | None = None, outcome: str = "success",
                  error: str | None = None) -> int:
    """Validate, sign and append one record to the log at *path*; returns its seq."""
    if not EVENT.fullmatch(event):
        raise TvdeployError(f"audit: {event!r} is not a valid event name (like 'vm.create')")
    if not OUTCOME.fullmatch(outcome):
        raise TvdeployError(f"audit: event {event}: {outcome!r} is not a valid outcome")
    clean = _clean_objects(objects, event)
    leak = find_secret({"event": event, "site": site, "objects": clean, "outcome": outcome})
    if leak:
        # Never print the value: the key path is enough to find the bug.
        raise TvdeployError(f"audit: event {event}: refusing to record {leak}: it holds a secret value")
    if error is not None:
        # An error message is recorded even if a bug put a secret in it, but masked.
        error = redact(str(error))
        if len(error) > MAX_ERROR:
            error = error[: MAX_ERROR - 3] + "..."
    key, kid = signing_key()
    time = utc_now()

    with audit_log.locked(path) as fd:
        head = audit_log.head_of(fd, path)
        try:
            line = build_record(head, event=event, site=site, objects=clean, outcome=outcome,
                                error=error, key=key, key_id=kid, time=time)
        except CanonicalError as exc:
            raise TvdeployError(f"audit: event {event}: {exc}") from None
        if len(line) > audit_log.MAX_LINE:
            # verify refuses longer lines (hostile input): never write one it would refuse
            raise TvdeployError(f"audit: event {event}: record too large ({len(line)} bytes)")
        seq = head.seq + 1
        if seq % checkpoint.EVERY:
            audit_log.write_line(fd, line)
        else:
            new_head = audit_log.Head(seq, audit_log.line_hash(line))
            cp = checkpoint.build(new_head, time=time, key_id=kid, site=site, private_key=key)
            with checkpoint.open_for_append(path) as cfd:
                audit_log.write_line(fd, line)
                audit_log.write_line(cfd, cp)
    log.debug("audit %s seq %d -> %s", event, seq, path)
    return seq


def record(site: Site, event: str, *, objects: list[dict[str, str]] | None = None,
           outcome: str = "success", error: str | None = None) -> None:
    """Append a signed record of *event* on *site* to the site's audit log."""
    path = site_log_path(site)
    try:
        append_record(path, event=event, site=site.site.name, objects=objects, outcome=outcome, error=error)
    finally:
        _PENDING[str(path)] = site


def forget_pending(site: Site) -> None:
    """The command copied *site*'s log to the managers itself (with connections it had open)."""
    _PENDING.pop(str(site_log_path(site)), None)


def take_pending() -> list[Site]:
    """The sites recorded on since the last call (tvdeploy.execute.audit_site copies their logs
    to the site's managers once per command)."""
    sites = list(_PENDING.values())
    _PENDING.clear()
    return sites


def record_global(event: str, *, objects: list[dict[str, str]] | None = None,
                  outcome: str = "success", error: str | None = None) -> None:
    """Append a signed record of an event that belongs to no site (key.generate, bundle.sign)."""
    append_record(global_log_path(), event=event, site=None, objects=objects, outcome=outcome,
                  error=error)


def prepare() -> None:
    """Unlock the operator key now: a mutating command calls this before it changes anything,
    so a wrong passphrase stops it before the change rather than after (when the record fails)."""
    signing_key()


def repair(path: Path) -> list[Any]:
    """Cut a torn last line from the log at *path* (and its checkpoints file), keep it beside the
    log, and record the repair. Returns the fragments cut (empty: nothing to repair)."""
    from tvdeploy.audit.repair import cut_torn_tails

    signing_key()  # unlock first: never cut without being able to record it
    stamp = utc_now().replace(":", "").replace("-", "")
    fragments, site = cut_torn_tails(path, stamp)
    if fragments:
        append_record(path, event="audit.repair", site=site, objects=[
            {"type": "fragment", "name": f.saved_as.name, "file": f.source.name, "digest": f.digest,
             "size": str(f.size)} for f in fragments
        ])
    return fragments


def write_checkpoint(path: Path, site: str | None) -> audit_log.Head:
    """Write a signed checkpoint of the log at *path* now."""
    key, kid = signing_key()
    return checkpoint.write_now(path, time=utc_now(), key_id=kid, site=site, private_key=key)
