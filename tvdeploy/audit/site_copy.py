"""The site's copies of the audit log (pure: paths, the append decision, the comparison).

Each manager keeps a byte-identical copy of the operator's log and checkpoints file under
``REMOTE_DIR`` (``<site>.log``, ``<site>.checkpoints``), so losing the operator's laptop loses no
record. After every command that recorded, ``tvdeploy.execute.audit_site`` asks each manager for
the size and SHA-256 of its copy and appends what it lacks; a copy that is not a prefix of the
local file is never overwritten (it is evidence) and is reported instead.

Why /var/log and not /var/lib: on the lab, nodes share the host's /var/lib but each has its own
/var/log (LAB.md); on a real site both are per host, and the copy is a log.

``compare`` says which records each side (the local log, each manager's copy) lacks against the
union of all sides, and which seqs differ between sides.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field

REMOTE_DIR = "/var/log/tvdeploy/audit"
MAX_COPY = 256 * 1024 * 1024  # refuse to read a site copy larger than this


class Diverged(ValueError):
    """A site copy that is not a prefix of the local file."""


@dataclass(frozen=True)
class RemoteFile:
    size: int
    sha256: str | None  # None: the file does not exist


def remote_paths(site_name: str) -> tuple[str, str]:
    """(log, checkpoints) on each manager."""
    return f"{REMOTE_DIR}/{site_name}.log", f"{REMOTE_DIR}/{site_name}.checkpoints"


def probe_script(paths: tuple[str, ...]) -> str:
    """One line per path: ``SIZE SHA256`` or ``0 -`` when missing."""
    parts = []
    for p in paths:
        q = shlex.quote(p)
        parts.append(f"if [ -f {q} ]; then echo \"$(wc -c < {q}) $(sha256sum < {q} | cut -d' ' -f1)\"; "
                     "else echo '0 -'; fi")
    return "; ".join(parts)


def parse_probe(text: str, count: int) -> list[RemoteFile]:
    lines = text.strip().splitlines()
    if len(lines) != count:
        raise ValueError(f"expected {count} lines from the probe, got {len(lines)}")
    out = []
    for line in lines:
        size, _, digest = line.strip().partition(" ")
        out.append(RemoteFile(int(size), None if digest == "-" else digest))
    return out


def complete_part(local: bytes) -> bytes:
    """The local file up to its last newline (a torn last line is never copied)."""
    return local[: local.rfind(b"\n") + 1]


def to_append(local: bytes, remote: RemoteFile) -> bytes:
    """The bytes the site copy lacks; raises Diverged when it is not a prefix of *local*."""
    whole = complete_part(local)
    if remote.sha256 is None:
        return whole
    if remote.size > len(whole):
        raise Diverged(f"it holds {remote.size} bytes, more than the local {len(whole)}")
    if hashlib.sha256(whole[: remote.size]).hexdigest() != remote.sha256:
        raise Diverged(f"its {remote.size} bytes differ from the local file's first {remote.size}")
    return whole[remote.size:]


def append_script(path: str, expected_size: int) -> str:
    """Append stdin to *path* only if it still has *expected_size* bytes (exit 3 otherwise)."""
    q = shlex.quote(path)
    d = shlex.quote(path.rsplit("/", 1)[0])
    return (f"set -e; umask 077; mkdir -p {d}; touch {q}; "
            f"if [ \"$(wc -c < {q})\" -ne {expected_size} ]; then echo 'changed meanwhile' >&2; exit 3; fi; "
            f"cat >> {q}")


# --- comparison --------------------------------------------------------------------------------

@dataclass
class Side:
    name: str  # "local" or "node lab-mgr-1"
    lines: dict[int, bytes] = field(default_factory=dict)  # seq -> line
    unreadable: int = 0


def side_of(name: str, data: bytes) -> Side:
    """The records of a log by seq (lenient: a line that is not a record is counted, not read)."""
    side = Side(name)
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            seq = json.loads(line).get("seq")
        except (ValueError, AttributeError, RecursionError):
            seq = None
        if not isinstance(seq, int) or isinstance(seq, bool):
            side.unreadable += 1
            continue
        side.lines.setdefault(seq, line)
    return side


def seq_ranges(seqs: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    parts: list[str] = []
    start = prev = None
    for s in sorted(seqs):
        if prev is not None and s == prev + 1:
            prev = s
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = s
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Gap:
    side: str
    kind: str  # missing | differs | unreadable
    seqs: tuple[int, ...]
    count: int = 0  # unreadable lines

    def message(self) -> str:
        if self.kind == "unreadable":
            return f"{self.side}: {self.count} line(s) that are not audit records"
        what = "record(s) missing" if self.kind == "missing" else "record(s) that differ from another side"
        return f"{self.side}: {what}: seq {seq_ranges(list(self.seqs))}"

    def to_json(self) -> dict[str, object]:
        return {"side": self.side, "kind": self.kind, "seqs": list(self.seqs), "message": self.message()}


def compare(sides: list[Side]) -> list[Gap]:
    """Against the union of all sides: what each side lacks, and the seqs where sides disagree."""
    union: set[int] = set()
    for s in sides:
        union |= set(s.lines)
    gaps: list[Gap] = []
    for s in sides:
        missing = sorted(union - set(s.lines))
        if missing:
            gaps.append(Gap(s.name, "missing", tuple(missing)))
        if s.unreadable:
            gaps.append(Gap(s.name, "unreadable", (), s.unreadable))
    differs: dict[str, list[int]] = {}
    for seq in sorted(union):
        variants: dict[bytes, list[str]] = {}
        for s in sides:
            if seq in s.lines:
                variants.setdefault(s.lines[seq], []).append(s.name)
        if len(variants) > 1:
            # The minority versions are the odd ones out (ties: every side is named).
            top = max(len(v) for v in variants.values())
            odd = [n for names in variants.values() if len(names) < top for n in names] or \
                [n for names in variants.values() for n in names]
            for name in odd:
                differs.setdefault(name, []).append(seq)
    gaps += [Gap(name, "differs", tuple(seqs)) for name, seqs in differs.items()]
    return gaps
