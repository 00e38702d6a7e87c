"""Recover from a torn last line (a crash in the middle of an append), on purpose and on record.

The recorder refuses to append after a torn line; ``tvdeploy audit repair LOG`` is the explicit
way out: the fragment is moved to a file beside the log (kept as evidence, never deleted), the
log is cut back to its last complete record, and an ``audit.repair`` record naming the fragment's
digest and size is appended, so the repair itself is signed and chained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tvdeploy import state
from tvdeploy.audit import log as audit_log
from tvdeploy.errors import InputFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fragment:
    """A torn tail cut from a file and kept beside it."""

    source: Path
    saved_as: Path
    size: int
    digest: str


def _cut_torn_tail(fd: int, path: Path, stamp: str) -> Fragment | None:
    """With *fd* locked: move the bytes after the last newline of *path* aside, or None."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    # Find the last newline; the fragment can be at most one record long.
    start = max(0, size - audit_log.MAX_LINE - 1)
    tail = os.pread(fd, size - start, start)
    nl = tail.rfind(b"\n")
    if nl < 0 and start > 0:
        # Longer than any record: not the trace of one interrupted append. Cut nothing.
        raise InputFileError(f"{path}: the unterminated tail is longer than a record; inspect it by hand")
    keep = start + nl + 1 if nl >= 0 else 0
    fragment = os.pread(fd, size - keep, keep)
    saved = path.with_name(f"{path.name}.torn-{stamp}")
    state.write_atomic(saved, fragment, mode=0o600)
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.debug("cut %d torn bytes from %s into %s", len(fragment), path, saved)
    return Fragment(path, saved, len(fragment), "sha256:" + hashlib.sha256(fragment).hexdigest())


def _site_of(fd: int, path: Path) -> str | None:
    line = audit_log.last_line(fd, path)
    if line is None:
        return None
    try:
        site = json.loads(line).get("site")
    except (ValueError, AttributeError):
        return None
    return site if isinstance(site, str) else None


def cut_torn_tails(log_path: Path, stamp: str) -> tuple[list[Fragment], str | None]:
    """Cut the torn tails of the log and its checkpoints file; returns what was cut and the
    site named by the log's last complete record."""
    fragments: list[Fragment] = []
    if not log_path.exists():
        return fragments, None
    with audit_log.locked(log_path) as fd:
        cut = _cut_torn_tail(fd, log_path, stamp)
        if cut:
            fragments.append(cut)
        site = _site_of(fd, log_path)
        cps = audit_log.checkpoints_path(log_path)
        if cps.exists():
            with audit_log.locked(cps) as cfd:
                cut = _cut_torn_tail(cfd, cps, stamp)
                if cut:
                    fragments.append(cut)
    return fragments, site
