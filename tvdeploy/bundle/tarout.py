"""Writing tar members to a seekable file by hand, so content can be streamed and hashed once.

tarfile's ``addfile`` needs the member name before the data; a blob's name is its digest, known
only after the data went by. So a blob's header is written with a placeholder name of the same
length, the data streamed through the hash, and the header rewritten in place. Headers are
deterministic (mtime 0, root-owned) so the same images give the same bundle bytes.
"""

from __future__ import annotations

import hashlib
import queue
import tarfile
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

BLOCK = 512
CHUNK = 1024 * 1024
BUFFERS = 4
PIPELINE_MIN = 8 * CHUNK  # below this a thread costs more than it overlaps
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


class Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class TruncatedSource(Exception):
    """The source ended before the size its header announced."""


def header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # PAX only adds an extended header for what USTAR cannot hold (sizes over 8 GiB).
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


@dataclass(frozen=True)
class Written:
    offset: int  # where the member's header starts
    size: int
    sha256: str


def write_bytes(out: BinaryIO, name: str, data: bytes) -> Written:
    offset = out.tell()
    out.write(header(name, len(data)))
    out.write(data)
    out.write(padding(len(data)))
    return Written(offset, len(data), hashlib.sha256(data).hexdigest())


def write_dir(out: BinaryIO, name: str) -> None:
    out.write(header(name.rstrip("/") + "/", 0, directory=True))


def stream_blob(out: BinaryIO, src: Source, size: int, prefix: str,
                progress: object | None = None) -> Written:
    """Copy *size* bytes of *src* into a member named ``prefix + <sha256 hex>``, hashing on the
    way; the header is rewritten once the digest is known. *progress*(n) is called per chunk."""
    offset = out.tell()
    placeholder = header(prefix + "0" * 64, size)
    out.write(placeholder)
    digest = hashlib.sha256()
    readinto = getattr(src, "readinto", None)
    if readinto is not None and size > PIPELINE_MIN:
        _copy_pipelined(out, readinto, size, digest, progress)
    else:
        _copy(out, src, size, digest, progress)
    out.write(padding(size))
    hexdigest = digest.hexdigest()
    final = header(prefix + hexdigest, size)
    if len(final) != len(placeholder):  # same name length, same size: cannot differ
        raise AssertionError("tar header length changed")
    end = out.tell()
    out.seek(offset)
    out.write(final)
    out.seek(end)
    return Written(offset, size, hexdigest)


def _copy(out: BinaryIO, src: Source, size: int, digest: Any, progress: object | None) -> None:
    remaining = size
    while remaining:
        chunk = src.read(min(CHUNK, remaining))
        if not chunk:
            raise TruncatedSource(f"{remaining} bytes missing")
        digest.update(chunk)
        out.write(chunk)
        remaining -= len(chunk)
        if progress is not None:
            progress(len(chunk))  # type: ignore[operator]


def _copy_pipelined(out: BinaryIO, readinto: Any, size: int, digest: Any, progress: object | None) -> None:
    """Receive on this thread, hash and write on another: socket reads, sha256 and file writes
    all release the GIL, so on two cores they overlap. BUFFERS rotating buffers and a queue of
    BUFFERS - 2 keep a buffer from being refilled before it was hashed and written."""
    buffers = [memoryview(bytearray(CHUNK)) for _ in range(BUFFERS)]
    work: queue.Queue[memoryview | None] = queue.Queue(maxsize=BUFFERS - 2)
    failed: list[BaseException] = []

    def consume() -> None:
        while (item := work.get()) is not None:
            if not failed:
                try:
                    digest.update(item)
                    out.write(item)
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    failed.append(exc)

    writer = threading.Thread(target=consume, name="bundle-writer", daemon=True)
    writer.start()
    try:
        remaining, i = size, 0
        while remaining and not failed:
            view = buffers[i % BUFFERS][:min(CHUNK, remaining)]
            i += 1
            n = readinto(view)
            if not n:
                raise TruncatedSource(f"{remaining} bytes missing")
            work.put(view[:n])
            remaining -= n
            if progress is not None:
                progress(n)  # type: ignore[operator]
    finally:
        work.put(None)
        writer.join()
    if failed:
        raise failed[0]


def parse_pax(data: bytes) -> dict[str, str]:
    """Records ``"<len> <key>=<value>\n"`` of a pax extended header; ValueError if malformed."""
    import re

    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        m = re.match(rb"(\d{1,6}) ", data[pos:pos + 8])
        if not m or int(m.group(1)) < len(m.group(0)) + 2:
            raise ValueError("malformed pax header")
        length = int(m.group(1))
        record = data[pos + len(m.group(0)):pos + length]
        if len(record) != length - len(m.group(0)) or not record.endswith(b"\n") or b"=" not in record:
            raise ValueError("malformed pax header")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8")] = value.decode("utf-8")  # UnicodeDecodeError is a ValueError
        pos += length
    return out


def discard_from(out: BinaryIO, offset: int) -> None:
    """Drop everything from *offset* on (a blob that turned out to be stored already)."""
    out.seek(offset)
    out.truncate()
