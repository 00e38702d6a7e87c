"""The file work under split, verify and join of chunk folders (chunksplit, chunkverify, chunkjoin):
opening chunk files safely, creating files exclusively, the one read -> hash -> write loop, and
reading a chunk folder as one seekable file.

Chunks come from removable media that anyone may have touched, so a chunk is opened read-only,
without following a symlink (a link could point at a device or at a secret elsewhere on the
machine), without blocking on a fifo, and only if it is a regular file. Nothing here ever writes
to a chunk. A file being written (``.NAME.part`` until it is complete) is created exclusively:
a file or link already there under that name, placed by someone else or left by an interrupted
run, is never written through.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import io
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tvdeploy.bundle.chunkindex import Chunk, ChunkIndex
from tvdeploy.bundle.sizes import format_size
from tvdeploy.errors import InputFileError, RefusedError, TvdeployError, VerificationError
from tvdeploy.reporting import Reporter

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
BUFFER = 4 * 1024 * 1024
FILE_OVERHEAD = 4096  # a file system block per file written, for the free-space estimate
FreeSpace = Callable[[Path], int]


class ChunkFileError(Exception):
    """A chunk file that cannot be used: *kind* is "missing", "not a regular file" or "unreadable"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def open_regular(path: Path) -> tuple[int, os.stat_result]:
    """A read-only descriptor of *path* and its stat; ChunkFileError for anything but a regular
    file (the symlink check is the open itself, O_NOFOLLOW, so it cannot be raced)."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise ChunkFileError("missing", "") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ChunkFileError("not a regular file", "a symlink (refused; copy the file itself)") from None
        raise ChunkFileError("unreadable", exc.strerror or str(exc)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, fifo or socket"
        raise ChunkFileError("not a regular file", kind)
    return fd, st


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def preflight(target: Path, need: int, what: str, free_space: FreeSpace | None) -> None:
    """Refuse before writing when the file system of *target* has less than *need* bytes free."""
    probe = _existing_ancestor(target)
    free = (free_space or disk_free)(probe)
    if free < need:
        raise RefusedError(f"{target}: not enough free space for {what}: need {format_size(need)} "
                           f"({need} bytes), {format_size(free)} ({free} bytes) free on {probe}")


def require_dir(directory: Path) -> None:
    if not directory.exists():
        raise InputFileError(f"{directory}: chunk folder not found")
    if not directory.is_dir():
        raise InputFileError(f"{directory}: not a folder, expected a chunk folder")


def part_path(path: Path) -> Path:
    """The name *path* is written under until it is complete."""
    return path.with_name(f".{path.name}.part")


def create_part(path: Path) -> int:
    """A write descriptor of ``part_path(path)``, created here and now (0644: chunk folders hold no
    secret and are copied around)."""
    tmp = part_path(path)
    try:
        return os.open(tmp, CREATE_FLAGS, 0o644)
    except FileExistsError:
        raise TvdeployError(f"{tmp}: cannot write: it already exists (left by an interrupted run, or "
                            "placed there); remove it and run again") from None
    except OSError as exc:
        raise TvdeployError(f"{tmp}: cannot write: {exc.strerror or exc}") from None


def write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_file(path: Path, data: bytes, created: list[Path]) -> None:
    """Write *data* under the part name beside *path*, sync it, rename it to *path*; *created*
    lists what this run wrote (to be undone on failure)."""
    fd = create_part(path)
    created.append(part_path(path))
    try:
        write_all(fd, memoryview(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(part_path(path), path)
    created[-1] = path


class TotalHash:
    """The whole file's sha256, computed on a second thread while the calling thread hashes the
    chunk and writes: hashlib releases the GIL on large buffers, so the two hashes overlap instead
    of adding up. ``updating(view)`` returns once the buffer may be reused."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256-total")

    @contextmanager
    def updating(self, view: memoryview) -> Iterator[None]:
        future = self._pool.submit(self._hash.update, view)
        try:
            yield
        finally:
            future.result()

    def close(self) -> str:
        self._pool.shutdown(wait=True)
        return self._hash.hexdigest()


def pump(src: int, size: int, buf: bytearray, reporter: Reporter, task: str, *, out: int | None = None,
         total: TotalHash | None = None) -> tuple[str, int]:
    """Read up to *size* bytes of *src* (fewer only at its end), hash them, also into *total*,
    and write them to *out*; returns (sha256 hex, bytes read). The caller judges a short read."""
    digest = hashlib.sha256()
    view = memoryview(buf)
    done = 0
    while done < size:
        n = os.readv(src, [view[:min(len(view), size - done)]])
        if n == 0:
            break
        piece = view[:n]
        with total.updating(piece) if total is not None else nullcontext():
            digest.update(piece)
            if out is not None:
                write_all(out, piece)
        done += n
        reporter.advance(task, n)
    return digest.hexdigest(), done


class ChunkedReader(io.RawIOBase):
    """The chunks of *index* in *directory*, read in order as one read-only, seekable file.

    A chunk is opened when the position first reaches it and its size is checked against the
    index then; content is not hashed here (the bundle reader re-hashes everything it reads, and
    ``verify_chunk_dir`` checks every chunk's sha256). Reads fill the whole buffer unless the end
    is reached, across chunk boundaries, because the bundle reader treats a short read as a
    truncated archive.
    """

    def __init__(self, directory: Path, index: ChunkIndex) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.index = index
        self._starts = [c.offset for c in index.chunks]
        self._pos = 0
        self._fd: int | None = None
        self._fd_chunk = -1

    @property
    def size(self) -> int:
        return self.index.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.index.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _open(self, i: int) -> int:
        if self._fd_chunk == i and self._fd is not None:
            return self._fd
        self._close_fd()
        chunk = self.index.chunks[i]
        path = self.directory / chunk.name
        try:
            fd, st = open_regular(path)
        except ChunkFileError as exc:
            raise VerificationError(f"{path}: {exc}") from None
        if st.st_size != chunk.size:
            os.close(fd)
            raise VerificationError(f"{path}: {st.st_size} bytes where the index says {chunk.size} "
                                    "(changed since it was checked?)")
        self._fd, self._fd_chunk = fd, i
        return fd

    def _chunk_at(self, pos: int) -> tuple[int, Chunk]:
        i = bisect.bisect_right(self._starts, pos) - 1
        return i, self.index.chunks[i]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("read from a closed ChunkedReader")
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._pos < self.index.size:
            i, chunk = self._chunk_at(self._pos)
            fd = self._open(i)
            within = self._pos - chunk.offset
            want = min(len(view) - filled, chunk.size - within)
            n = os.preadv(fd, [view[filled:filled + want]], within)
            if n <= 0:
                raise VerificationError(f"{self.directory / chunk.name}: ends after {within} of "
                                        f"{chunk.size} bytes (truncated since it was checked?)")
            filled += n
            self._pos += n
        return filled

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(0, self.index.size - self._pos)
        n = remaining if size is None or size < 0 else min(size, remaining)
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])

    def readall(self) -> bytes:
        return self.read(-1)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._fd_chunk = None, -1

    def close(self) -> None:
        self._close_fd()
        super().close()
