"""Join a chunk folder back into one bundle file. Chunks are opened read-only and never deleted or
changed; each is checked while streaming and the whole file's sha256 before the rename.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tvdeploy import state
from tvdeploy.bundle import trust
from tvdeploy.bundle.chunkindex import INDEX_NAME, Chunk, ChunkIndex
from tvdeploy.bundle.chunkio import (
    BUFFER,
    FILE_OVERHEAD,
    ChunkFileError,
    FreeSpace,
    TotalHash,
    create_part,
    open_regular,
    part_path,
    preflight,
    pump,
)
from tvdeploy.bundle.chunkverify import check_index_signatures, read_index
from tvdeploy.bundle.sizes import format_size
from tvdeploy.bundle.verify import VALID
from tvdeploy.errors import InputFileError, RefusedError, TvdeployError, VerificationError
from tvdeploy.reporting import NullReporter, Reporter


@dataclass(frozen=True)
class JoinResult:
    path: Path
    index: ChunkIndex
    signers: tuple[str, ...]


def join_chunks(directory: Path, out: Path, *, trust_path: Path | None = None, reporter: Reporter | None = None,
                free_space: FreeSpace | None = None, now: datetime | None = None) -> JoinResult:
    """Reassemble the chunks of *directory* into *out*; each chunk is checked while streaming and
    the whole file's sha256 before the rename. With *trust_path* the index's signatures are
    checked first. Chunks are only ever opened read-only."""
    reporter = reporter or NullReporter()
    directory, out = Path(directory), Path(out)
    now = now or datetime.now(UTC)
    root = trust.load_verified(Path(trust_path), now)[1] if trust_path is not None else None
    index_bytes, index = read_index(directory)
    signers: tuple[str, ...] = ()
    if root is not None:
        checks, _extra = check_index_signatures(directory, index_bytes, root, now)
        signers = tuple(c.key_id for c in checks if c.status == VALID)
    if os.path.lexists(out):
        raise RefusedError(f"{out}: already exists; remove it or choose another name")
    if not out.parent.is_dir():
        raise InputFileError(f"{out.parent}: folder not found")
    preflight(out, index.size + FILE_OVERHEAD, f"the {format_size(index.size)} bundle", free_space)
    tmp = part_path(out)
    fd = create_part(out)
    total = TotalHash()
    try:
        buf = bytearray(min(BUFFER, index.chunk_size))
        reporter.task("join", f"joining {len(index.chunks)} chunks into {out}", total=index.size, unit="bytes")
        try:
            for chunk in index.chunks:
                _append_chunk(directory, chunk, fd, buf, total, reporter)
            os.fsync(fd)
        finally:
            os.close(fd)
        if total.close() != index.sha256:
            raise VerificationError(f"{directory / INDEX_NAME}: the joined chunks do not hash to the bundle's "
                                    "sha256 in the index")
        if os.path.lexists(out):
            raise RefusedError(f"{out}: appeared while joining; not overwritten")
        os.rename(tmp, out)
        state.fsync_dir(out.parent, tolerant=True)
    except BaseException as exc:
        total.close()
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # e.g. the medium filled up after the pre-flight
            raise TvdeployError(f"{exc.filename or out}: cannot write: {exc.strerror or exc}") from None
        raise
    reporter.done("join")
    return JoinResult(out, index, signers)


def _append_chunk(directory: Path, chunk: Chunk, out: int, buf: bytearray, total: TotalHash,
                  reporter: Reporter) -> None:
    path = directory / chunk.name
    try:
        fd, st = open_regular(path)
    except ChunkFileError as exc:
        raise VerificationError(f"{path}: {exc}; copy it again") from None
    try:
        if st.st_size != chunk.size:
            kind = "truncated" if st.st_size < chunk.size else "too long"
            raise VerificationError(f"{path}: {kind} ({st.st_size} bytes, expected {chunk.size}); copy it again")
        sha, done = pump(fd, chunk.size, buf, reporter, "join", out=out, total=total)
    finally:
        os.close(fd)
    if done < chunk.size:
        raise VerificationError(f"{path}: truncated while being read; copy it again")
    if sha != chunk.sha256:
        raise VerificationError(f"{path}: corrupt (sha256 does not match the index); copy it again")


