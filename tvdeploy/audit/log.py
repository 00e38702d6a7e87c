"""The audit log file: append one line under a lock, read lines back, the hash chain.

A log is a sequence of canonical-JSON lines. ``prev_hash`` of record N is the SHA-256 of line
N-1 (its bytes without the newline); record 1 has 64 zeros. Appends take an exclusive ``flock``
on the log, so concurrent commands on one machine serialize; the line goes out in one
``O_APPEND`` write followed by ``fsync``. A last line without its newline is the trace of a crash
mid-write: it is reported, never silently extended (appending after it would glue two records).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tvdeploy import state
from tvdeploy.errors import InputFileError, TvdeployError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MAX_LINE = 1024 * 1024  # a record is a few hundred bytes; anything near this is hostile
_TAIL_CHUNK = 64 * 1024


class TornLogError(TvdeployError):
    """The log's last line has no newline: a write was interrupted."""


@dataclass(frozen=True)
class Head:
    """Where the chain ends: the last record's seq (0 when empty) and the hash of its line."""

    seq: int
    hash: str


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def checkpoints_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.stem + ".checkpoints")


@contextmanager
def locked(path: Path) -> Iterator[int]:
    """Open *path* for appending (0600, created if missing) and hold an exclusive lock on it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if created:
            state.fsync_dir(path.parent)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock


def _log_of(path: Path) -> Path:
    """The log a file belongs to (the log itself, or the log beside a checkpoints file)."""
    return path.with_name(path.stem + ".log") if path.suffix == ".checkpoints" else path


def last_line(fd: int, path: Path) -> bytes | None:
    """The last complete line of the open file (without newline), None when the file is empty.
    Reads backwards from the end so an append costs the same on a long log."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise TornLogError(
            f"{path}: the last line is incomplete (a write was interrupted); refusing to append "
            f"after it. 'tvdeploy audit repair {_log_of(path)}' keeps the fragment and cuts it off"
        )
    end = size - 1  # offset of the final newline; the last line ends just before it
    buf = b""
    pos = end
    while True:
        start = max(0, pos - _TAIL_CHUNK)
        buf = os.pread(fd, pos - start, start) + buf  # buf covers [start, end)
        nl = buf.rfind(b"\n")
        if nl >= 0:
            return buf[nl + 1 :]
        if start == 0:
            return buf
        if len(buf) > MAX_LINE:
            raise InputFileError(f"{path}: the last record is longer than {MAX_LINE} bytes")
        pos = start


def head_of(fd: int, path: Path) -> Head:
    """The chain head of the open log, from its last line."""
    import json

    line = last_line(fd, path)
    if line is None:
        return Head(0, GENESIS)
    try:
        seq = json.loads(line)["seq"]
    except (ValueError, KeyError, TypeError):
        raise InputFileError(f"{path}: the last record is not a valid audit record") from None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise InputFileError(f"{path}: the last record has no valid seq")
    return Head(seq, line_hash(line))


def write_line(fd: int, line: bytes) -> None:
    """Append one line and make it durable. One write call: with O_APPEND the kernel puts the
    whole buffer at the end; the loop only covers a short write (disk full, signal)."""
    if b"\n" in line:
        raise ValueError("an audit line must not contain a newline")
    data = line + b"\n"
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


def read_lines(path: Path, what: str = "audit log") -> Iterator[tuple[int, bytes, bool]]:
    """Yield (line number, line bytes without newline, complete) for each line of *path*;
    ``complete`` is False only for a last line without its newline. Streams: memory stays flat."""
    from tvdeploy.inputs import open_input

    with open_input(path, what) as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE:
                raise InputFileError(f"{path}: line {number} is longer than {MAX_LINE} bytes")
            if raw.endswith(b"\n"):
                yield number, raw[:-1], True
            else:
                yield number, raw, False
