"""What an import leaves behind: the last completed import (operator state and every manager), the
journal of the import in progress, the per-site import lock, and the result of one import."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import state
from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.parallel import for_each
from tvdeploy.release import import_state as S

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool

SITE_RECORD = "/etc/docker/tvdeploy/last-import.json"


def imports_dir(site: Site) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / "imports"


def read_local_last(site: Site) -> S.Completed | None:
    path = imports_dir(site) / "last.json"
    try:
        return S.Completed.from_json(json.loads(path.read_bytes()), str(path))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise TvdeployError(f"{path}: damaged record of the last import ({exc}); restore it or remove it "
                            "(the copy on the managers still counts)") from None


def read_site_last(site: Site, pool: SSHPool) -> S.Completed | None:
    """The highest record on the managers (any manager may have been replaced); read in parallel."""
    def one(node: Any) -> S.Completed | None:
        text = pool.get(node.name).run(f"cat {SITE_RECORD} 2>/dev/null || true", check=False).stdout
        if not text.strip():
            return None
        try:
            return S.Completed.from_json(json.loads(text), f"node {node.name}: {SITE_RECORD}")
        except ValueError as exc:
            raise TvdeployError(f"node {node.name}: {SITE_RECORD}: damaged record of the last import ({exc})") \
                from None

    return S.latest(for_each(site.managers, one, label=lambda n: f"node {n.name}"))


def write_completed(site: Site, pool: SSHPool, done: S.Completed) -> None:
    from tvdeploy.connectors.ssh import FileSpec

    data = json.dumps(done.to_json(), sort_keys=True).encode() + b"\n"
    for_each(site.managers, lambda n: pool.get(n.name).put_files([FileSpec(SITE_RECORD, data, 0o644)]),
             label=lambda n: f"node {n.name}")
    state.write_atomic(imports_dir(site) / "last.json", data, mode=0o644)


@contextmanager
def import_lock(site: Site) -> Iterator[None]:
    """One import per site at a time on this machine (two would interleave one journal)."""
    import fcntl

    path = imports_dir(site) / "lock"
    state.ensure_dir(path.parent)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefusedError(f"{path}: another bundle import of site {site.site.name} is running") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class JournalFile:
    """The append-only journal of the import in progress (fsync per line: it is small)."""

    def __init__(self, site: Site) -> None:
        self.path = imports_dir(site) / "journal.jsonl"

    def load(self) -> S.Journal | None:
        try:
            return S.parse_journal(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def start(self, journal: S.Journal) -> None:
        state.write_atomic(self.path, S.encode(journal.header()))

    def add(self, journal: S.Journal, rec: dict[str, Any]) -> None:
        S.apply_record(journal, rec)
        with open(self.path, "ab") as fh:
            fh.write(S.encode(rec))
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Moved:
    moved: int = 0
    skipped: int = 0
    uploaded: int = 0  # blobs sent
    present: int = 0  # blobs already there (or mounted)


@dataclass
class ImportResult:
    release: str
    sequence: int
    mode: str
    manifest_sha256: str
    resumed: bool
    images: dict[str, str] = field(default_factory=dict)  # service -> digest / image id
    bytes_moved: int = 0
    bytes_skipped: int = 0
    registry: str | None = None
    nodes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall time
    replicas: dict[str, str] = field(default_factory=dict)  # site-registry: manager -> "filled" / "down: why"

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "mode": self.mode,
                "manifest_sha256": self.manifest_sha256, "resumed": self.resumed, "registry": self.registry,
                "nodes": self.nodes, "bytes_moved": self.bytes_moved, "bytes_skipped": self.bytes_skipped,
                "images": self.images, "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                **({"replicas": self.replicas} if self.mode == "site-registry" else {})}
