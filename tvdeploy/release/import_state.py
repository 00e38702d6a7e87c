"""What a site has imported: the last completed import (replay protection) and the journal of an
import in progress (resume). Pure data and decisions; reading/writing is done by the caller.

The last completed import is kept twice: in the operator state and on the site's managers, so a
second operator machine (or a restored laptop) still refuses an older bundle. The journal is a
JSON-lines file: a header line naming the bundle, then one line per blob or image done; a torn
last line (a crash mid-write) is ignored, so the journal never blocks a resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tvdeploy.errors import RefusedError

JOURNAL_FORMAT = "tvdeploy-import-journal/1"
MAX_RECORD = 64 * 1024


@dataclass(frozen=True)
class Completed:
    """One completed import: which release, its sequence and the bundle's manifest digest."""

    release: str
    sequence: int
    manifest_sha256: str
    mode: str = ""
    time: str = ""
    images: dict[str, str] = field(default_factory=dict)  # service -> manifest digest

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "manifest_sha256": self.manifest_sha256,
                "mode": self.mode, "time": self.time, "images": dict(self.images)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Completed:
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a JSON object")
        seq = doc.get("sequence")
        digest = doc.get("manifest_sha256")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"{where}: sequence: expected an integer >= 1")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError(f"{where}: manifest_sha256: expected 64 hex digits")
        images = doc.get("images") or {}
        if not isinstance(images, dict) or not all(isinstance(v, str) for v in images.values()):
            raise ValueError(f"{where}: images: expected {{service: digest}}")
        return cls(str(doc.get("release", "")), seq, digest, str(doc.get("mode", "")), str(doc.get("time", "")),
                   {str(k): v for k, v in images.items()})


def latest(records: list[Completed | None]) -> Completed | None:
    """The highest-sequence completed import among the operator's and the site's copies."""
    found = [r for r in records if r is not None]
    return max(found, key=lambda r: r.sequence) if found else None


class AlreadyImported(RefusedError):
    """The same bundle again: nothing to do (the command says so and succeeds)."""


def check_replay(release: str, sequence: int, manifest_sha256: str, last: Completed | None) -> None:
    """Refuse a bundle that is not newer than the last completed import (replay / rollback).
    The same bundle again raises AlreadyImported: it was imported in full already, a no-op."""
    if last is None or sequence > last.sequence:
        return
    if manifest_sha256 == last.manifest_sha256:
        raise AlreadyImported(f"release {release} (sequence {sequence}) is already imported on this site; "
                              "nothing to do")
    raise RefusedError(f"release {release} has sequence {sequence}, not greater than the last completed "
                       f"import on this site (release {last.release}, sequence {last.sequence}): refused "
                       "(replay or rollback of an older bundle)")


@dataclass
class Journal:
    """Progress of one import: which bundle, and what is done already."""

    manifest_sha256: str
    release: str
    sequence: int
    mode: str
    blobs: set[str] = field(default_factory=set)  # "repo@sha256:..." present in the registry
    images: dict[str, str] = field(default_factory=dict)  # service -> manifest digest, read back
    nodes: set[str] = field(default_factory=set)  # node-load: "node/service" loaded and checked

    def header(self) -> dict[str, Any]:
        return {"format": JOURNAL_FORMAT, "manifest_sha256": self.manifest_sha256, "release": self.release,
                "sequence": self.sequence, "mode": self.mode}

    def same_bundle(self, manifest_sha256: str, mode: str) -> bool:
        return self.manifest_sha256 == manifest_sha256 and self.mode == mode


def encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def parse_journal(data: bytes) -> Journal | None:
    """The journal in *data*, or None when it has no usable header (then it is started afresh).
    Lines after the header that do not parse (a torn final write) are skipped."""
    lines = data.split(b"\n")
    try:
        head = json.loads(lines[0]) if len(lines[0]) <= MAX_RECORD else None
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("format") != JOURNAL_FORMAT:
        return None
    try:
        done = Completed.from_json(head, "journal")
    except ValueError:
        return None
    journal = Journal(done.manifest_sha256, done.release, done.sequence, str(head.get("mode", "")))
    for raw in lines[1:]:
        if not raw.strip() or len(raw) > MAX_RECORD:
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        apply_record(journal, rec)
    return journal


def apply_record(journal: Journal, rec: dict[str, Any]) -> None:
    if isinstance(rec.get("blob"), str):
        journal.blobs.add(rec["blob"])
    elif isinstance(rec.get("image"), str) and isinstance(rec.get("digest"), str):
        journal.images[rec["image"]] = rec["digest"]
    elif isinstance(rec.get("loaded"), str):
        journal.nodes.add(rec["loaded"])


def missing_base(needed: dict[str, list[str]], present: set[str], limit: int = 5) -> RefusedError | None:
    """A delta's refusal when blobs it does not ship are not on the site: *needed* maps each
    not-shipped blob digest to the images that use it; the message lists the first *limit*,
    ``details`` has every one."""
    missing = sorted(d for d in needed if d not in present)
    if not missing:
        return None
    lines = [f"{d} (used by {', '.join(sorted(set(needed[d])))})" for d in missing]
    shown = "; ".join(lines[:limit]) + (f"; and {len(lines) - limit} more" if len(lines) > limit else "")
    return RefusedError(f"delta bundle: {len(missing)} base blob(s) it expects are not on this site: {shown}",
                        details=lines[limit:])
