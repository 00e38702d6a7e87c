"""Compressed bundles for transport: the plain bundle tar, zstd-compressed as a whole.

A compressed bundle is byte for byte the plain one once decompressed: same members, digests,
``manifest.json`` and signatures (nothing inside refers to the compression). It is written in the
*Zstandard seekable format*: independent zstd frames of at most ``FRAME`` (128 MiB) of the tar
each, followed by a skippable frame holding the seek table (each frame's compressed and
decompressed size). Any zstd decoder reads it as one stream (``zstd -d`` gives the plain tar);
tvdeploy reads it with random access, which the reader needs (image manifests are read back by
offset) and import too (blobs by offset): a seek decompresses at most one frame up to the target.
Chosen over decompress-to-temp: no second copy of a multi-GiB bundle on the operator's disk, and
no extra pass. Compression runs zstd's own worker threads (``nbWorkers`` = CPU count: both cores
here) at level 3, as ``zstd -T0`` does; the seekable framing costs about 0.01% in size.

``bundle build --compress`` compresses while the bundle is written (``Follower``, a step behind
the writer), so compression overlaps the build instead of adding a second pass.

Detection is by content, not name: a file starting with the zstd frame magic is compressed.

Reading hostile input (``open_plain``), memory stays bounded: the decoder's window is limited to
``2**WINDOW_LOG_MAX`` (8 MiB; tvdeploy writes 2 MiB windows), so a frame asking for a larger one
is refused before its buffer exists; the seek table is refused above ``MAX_FRAMES`` entries (16
bytes each in memory); reads go through 1 MiB buffers. A truncated file lacks its seek table (it
is the last bytes) and is refused when opened; a frame cut or damaged inside is refused when read.
Every byte that comes out is then checked by the bundle reader exactly as for a plain bundle.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tvdeploy.errors import TvdeployError, VerificationError
from tvdeploy.reporting import NullReporter, Reporter

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SEEKABLE_MAGIC = 0x8F92EAB1
FOOTER = 9
LEVEL = 3
FRAME = 128 * 1024 * 1024
READ = 4 * 1024 * 1024
WINDOW_LOG_MAX = 23
MAX_FRAMES = 1024 * 1024  # 128 TiB of bundle at 128 MiB a frame
SUFFIX = ".zst"


class CompressedBundleError(VerificationError):
    """A compressed bundle that cannot be read: truncated, damaged, not in the seekable format."""


def is_compressed(head: bytes) -> bool:
    """Whether a file starting with *head* (its first bytes) is a compressed bundle."""
    return head[:4] == ZSTD_MAGIC


def file_is_compressed(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return is_compressed(fh.read(4))
    except OSError:
        return False  # the caller's own open names the problem


def threads() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Compressed:
    path: Path
    size: int  # compressed bytes
    plain_size: int


def compress_file(src: Path, dst: Path, *, level: int = LEVEL, workers: int | None = None,
                  reporter: Reporter | None = None, frame: int = FRAME) -> Compressed:
    """Compress the plain bundle *src* into *dst* (written beside as a temporary file, renamed
    when complete). *src* is read front to back once."""
    from pyzstd import CParameter, SeekableZstdFile

    reporter = reporter or NullReporter()
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as fh:
        if is_compressed(fh.read(4)):
            raise TvdeployError(f"{src}: already compressed")
    options: dict[int, int] = {CParameter.compressionLevel: level, CParameter.nbWorkers: workers or threads(),
                               CParameter.checksumFlag: 1}
    total = src.stat().st_size
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o644)
        reporter.task("compress", f"compressing {src.name}", total=total, unit="bytes")
        with os.fdopen(fd, "wb") as raw, open(src, "rb") as fh:
            with SeekableZstdFile(raw, "w", level_or_option=options, max_frame_content_size=frame) as out:
                while data := fh.read(READ):
                    out.write(data)
                    reporter.advance("compress", len(data))
            raw.flush()
            os.fsync(raw.fileno())
        reporter.done("compress")
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Compressed(dst, dst.stat().st_size, total)


class Follower:
    """Compresses a bundle *while it is being written*, a step behind the writer: the writer
    says which prefix of its file is final (``advance``: the start of each new member; a member
    may still be rewritten or dropped, earlier ones never are), a thread reads that prefix back
    (its own descriptor, so the writer's renames do not matter) and compresses it. ``finish``
    compresses the rest (e.g. after signatures were appended at the end) and renames the result
    into place; ``abort`` drops it. Output and framing are those of ``compress_file``."""

    def __init__(self, dst: Path, *, level: int = LEVEL, workers: int | None = None) -> None:
        self.dst = Path(dst)
        self.level, self.workers = level, workers
        self.cond = threading.Condition()
        self.mark = 0
        self.done = 0
        self.closing = False
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.src_fd = -1

    def attach(self, src: Path) -> None:
        """Start following *src* (the file being written)."""
        from pyzstd import CParameter, SeekableZstdFile

        self.src_fd = os.open(src, os.O_RDONLY)
        fd, tmp = tempfile.mkstemp(dir=self.dst.parent, prefix=f".{self.dst.name}.", suffix=".partial")
        os.fchmod(fd, 0o644)
        self.tmp = Path(tmp)
        self.raw = os.fdopen(fd, "wb")
        options: dict[int, int] = {CParameter.compressionLevel: self.level,
                                   CParameter.nbWorkers: self.workers or threads(), CParameter.checksumFlag: 1}
        self.out = SeekableZstdFile(self.raw, "w", level_or_option=options, max_frame_content_size=FRAME)
        self.thread = threading.Thread(target=self._run, name="bundle-compress", daemon=True)
        self.thread.start()

    def advance(self, offset: int) -> None:
        with self.cond:
            if offset > self.mark:
                self.mark = offset
                self.cond.notify()

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.done >= self.mark and not self.closing:
                        self.cond.wait()
                    mark, closing = self.mark, self.closing
                while self.done < mark:
                    data = os.pread(self.src_fd, min(READ, mark - self.done), self.done)
                    if not data:
                        raise OSError(f"bundle ended at byte {self.done} while being compressed")
                    self.out.write(data)
                    self.done += len(data)
                if closing and self.done >= mark:
                    return
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> Compressed:
        """The source is complete (to its end): compress the rest, close, rename into place."""
        assert self.thread is not None
        end = os.fstat(self.src_fd).st_size
        with self.cond:
            self.mark = max(self.mark, end)
            self.closing = True
            self.cond.notify()
        self.thread.join()
        try:
            if self.error is not None:
                raise self.error
            self.out.close()
            self.raw.flush()
            os.fsync(self.raw.fileno())
            self.raw.close()
            os.replace(self.tmp, self.dst)
        except BaseException:
            self.abort()
            raise
        os.close(self.src_fd)
        self.src_fd = -1
        self.thread = None
        return Compressed(self.dst, self.dst.stat().st_size, end)

    def abort(self) -> None:
        if self.thread is not None:
            with self.cond:
                self.closing = True
                self.mark = self.done  # nothing more
                self.cond.notify()
            self.thread.join()
            self.thread = None
            for close in (self.out.close, self.raw.close):
                try:
                    close()
                except Exception:  # noqa: S110 - dropping a partial file
                    pass
            self.tmp.unlink(missing_ok=True)
        if self.src_fd >= 0:
            os.close(self.src_fd)
            self.src_fd = -1


def _check_footer(raw: BinaryIO, name: str) -> None:
    """Refuse what is not our seekable format before pyzstd loads the table into memory."""
    end = raw.seek(0, io.SEEK_END)
    if end < FOOTER + 8:
        raise CompressedBundleError(f"{name}: truncated compressed bundle ({end} bytes)")
    raw.seek(end - FOOTER)
    frames, descriptor, magic = struct.unpack("<IBI", raw.read(FOOTER))
    if magic != SEEKABLE_MAGIC:
        raise CompressedBundleError(f"{name}: truncated compressed bundle, or not one tvdeploy wrote "
                                    "(no seek table at its end); copy it again")
    if frames > MAX_FRAMES or descriptor & 0x7C:
        raise CompressedBundleError(f"{name}: compressed bundle with a malformed seek table")
    raw.seek(0)


class PlainReader(io.RawIOBase):
    """The plain tar bytes of a compressed bundle: read, readinto, seek, tell. Decompression
    errors become CompressedBundleError naming the bundle."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        from pyzstd import DParameter, SeekableFormatError, SeekableZstdFile, ZstdError

        super().__init__()
        self.raw = raw  # closed with this reader
        self.bundle_name = name
        self.errors: tuple[type[BaseException], ...] = (EOFError, ValueError, OSError, ZstdError,
                                                          SeekableFormatError)
        _check_footer(raw, name)
        with self.guard():
            self.zf = SeekableZstdFile(raw, "r", level_or_option={DParameter.windowLogMax: WINDOW_LOG_MAX})
            self.plain_size = int(self.zf.seek(0, io.SEEK_END))
            self.zf.seek(0)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except self.errors as exc:
            what = "truncated" if isinstance(exc, EOFError) else "damaged"
            raise CompressedBundleError(f"{self.bundle_name}: {what} compressed bundle ({_short(exc)}); "
                                        "copy it again") from None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self.guard():
            return int(self.zf.readinto(b))

    def read(self, size: int | None = -1) -> bytes:
        with self.guard():
            return bytes(self.zf.read(size))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self.guard():
            return int(self.zf.seek(offset, whence))

    def tell(self) -> int:
        return int(self.zf.tell())

    def close(self) -> None:
        if not self.closed and hasattr(self, "zf"):
            self.zf.close()
            self.raw.close()
        super().close()


def open_plain(raw: BinaryIO, name: str) -> BinaryIO:
    """*raw* itself when it is a plain bundle, else a PlainReader over it (positioned at 0)."""
    start = raw.tell()
    head = raw.read(4)
    raw.seek(start)
    if not is_compressed(head):
        return raw
    return PlainReader(raw, name)  # type: ignore[return-value]


def _short(exc: BaseException) -> str:
    return str(exc).removeprefix("Zstandard Seekable Format error: ")[:160] or type(exc).__name__
