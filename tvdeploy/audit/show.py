"""Read an audit log for display: lenient (skips lines it cannot parse), streaming, no checks.
``audit verify`` is what says whether a log can be trusted."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.audit import log as audit_log


@dataclass
class Listing:
    records: list[dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0  # lines that are not a JSON object
    torn: bool = False  # the last line has no newline


def read_records(path: Path, last: int | None = None) -> Listing:
    """The records of the log at *path* (all, or the last *last*), without their signatures.
    A log that does not exist yet has no records."""
    listing = Listing()
    if not path.exists():
        return listing
    kept: deque[dict[str, Any]] = deque(maxlen=last)
    for _number, line, complete in audit_log.read_lines(path):
        if not complete:
            listing.torn = True
            continue
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            listing.unreadable += 1
            continue
        doc.pop("sig", None)
        kept.append(doc)
    listing.records = list(kept)
    return listing


def summary(record: dict[str, Any]) -> list[str]:
    """One table row: seq, time, event, actor, objects, outcome."""
    actor = record.get("actor")
    who = ""
    if isinstance(actor, dict):
        who = f"{actor.get('os_user', '?')} ({str(actor.get('key_id', ''))[:12]})"
    objects = record.get("objects")
    names = []
    if isinstance(objects, list):
        for obj in objects[:3]:
            if isinstance(obj, dict):
                label = obj.get("name") or obj.get("digest") or obj.get("id") or ""
                names.append(f"{obj.get('type', '?')}:{label}")
        if len(objects) > 3:
            names.append(f"+{len(objects) - 3} more")
    outcome = str(record.get("outcome", ""))
    if record.get("error"):
        outcome += f": {record['error']}"
    return [str(record.get("seq", "")), str(record.get("time", "")), str(record.get("event", "")),
            who, ", ".join(names), outcome]
