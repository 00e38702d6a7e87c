"""Signed checkpoints: seq + chain hash, kept in a file beside the log (``audit.checkpoints``).

A checkpoint commits to the whole chain up to ``seq`` (``chain_hash`` is the SHA-256 of record
``seq``'s line, which holds the previous line's hash, and so on back to the genesis). A log cut
back below its last checkpoint therefore fails verification even though every remaining record
is intact. Checkpoints are written under the log's lock, every ``EVERY`` records and on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit import log as audit_log
from tvdeploy.audit.canonical import canonical_json
from tvdeploy.audit.signing import sign
from tvdeploy.errors import TvdeployError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EVERY = 50
FIELDS = ("seq", "chain_hash", "time", "key_id", "site", "sig")


def build(head: audit_log.Head, *, time: str, key_id: str, site: str | None,
          private_key: Ed25519PrivateKey) -> bytes:
    doc: dict[str, Any] = {
        "seq": head.seq,
        "chain_hash": head.hash,
        "time": time,
        "key_id": key_id,
        "site": site,
    }
    return canonical_json(sign(private_key, doc))


@contextmanager
def open_for_append(log_path: Path) -> Iterator[int]:
    """The locked checkpoints file of *log_path*, checked for a torn last line before the
    caller writes anything (the caller holds the log's lock)."""
    path = audit_log.checkpoints_path(log_path)
    with audit_log.locked(path) as fd:
        audit_log.last_line(fd, path)  # raises on a torn line: never glue a checkpoint onto it
        yield fd


def write_now(log_path: Path, *, time: str, key_id: str, site: str | None,
              private_key: Ed25519PrivateKey) -> audit_log.Head:
    """Write a checkpoint of the log's current head (on demand)."""
    if not log_path.exists():
        raise TvdeployError(f"{log_path}: no audit log yet, nothing to checkpoint")
    with audit_log.locked(log_path) as fd:
        head = audit_log.head_of(fd, log_path)
        if head.seq == 0:
            raise TvdeployError(f"{log_path}: the audit log is empty, nothing to checkpoint")
        line = build(head, time=time, key_id=key_id, site=site, private_key=private_key)
        with open_for_append(log_path) as cfd:
            audit_log.write_line(cfd, line)
    return head
