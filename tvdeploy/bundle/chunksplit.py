"""Split a bundle into numbered chunks for removable media (the chunk folder is described in
``tvdeploy.bundle.chunkindex``; ``chunkverify`` checks one, ``chunkjoin`` joins one).

Split reads the bundle once, hashing each chunk and the whole file on the way, and writes every
file under a temporary name, created exclusively, that is renamed when complete; the index is
renamed last, so a folder without ``chunks.json`` is visibly unfinished. On failure, exactly
what this run wrote is removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvdeploy import state
from tvdeploy.bundle import dsse, statement
from tvdeploy.bundle.chunkindex import (
    INDEX_NAME,
    MAX_CHUNKS,
    PAYLOAD_TYPE,
    SIG_DIR,
    Chunk,
    ChunkIndex,
    chunk_count,
    chunk_names,
    index_statement,
    safe_name,
    safe_stem,
)
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
    write_file,
)
from tvdeploy.bundle.sizes import format_size
from tvdeploy.errors import InputFileError, RefusedError, TvdeployError, VerificationError
from tvdeploy.reporting import NullReporter, Reporter

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitResult:
    dir: Path
    index: ChunkIndex
    index_sha256: str
    signers: tuple[str, ...]


def split_bundle(bundle: Path, size: int, out_dir: Path, signers: list[tuple[Ed25519PrivateKey, str]],
                 reporter: Reporter | None = None, *, free_space: FreeSpace | None = None) -> SplitResult:
    """Write *bundle* as chunks of *size* bytes plus a signed index into *out_dir*."""
    reporter = reporter or NullReporter()
    bundle, out_dir = Path(bundle), Path(out_dir)
    if not signers:
        raise RefusedError("split needs at least one signing key (--key): an unsigned index cannot be trusted")
    if size < 1:
        raise RefusedError(f"chunk size {size}: must be at least 1 byte")
    src, total_size = _open_bundle(bundle)
    created: list[Path] = []
    made_dirs: list[Path] = []
    try:
        count = chunk_count(total_size, size)
        if count > MAX_CHUNKS:
            raise RefusedError(f"{bundle}: {format_size(total_size)} in chunks of {format_size(size)} makes "
                               f"{count} chunks (at most {MAX_CHUNKS}); choose a larger --size")
        name = safe_name(bundle.name)
        names = chunk_names(safe_stem(bundle.name), count)
        _conflicts(out_dir, names)
        need = total_size + (count + len(signers) + 2) * FILE_OVERHEAD + count * 200
        preflight(out_dir, need, f"{count} chunks of {bundle.name}", free_space)
        if not out_dir.exists():
            out_dir.mkdir(parents=True)
            made_dirs.append(out_dir)
        chunks, total_sha256 = _write_chunks(bundle, src, total_size, size, out_dir, names, created, reporter)
        index = ChunkIndex(name, total_size, total_sha256, size, chunks)
        index_bytes = index.to_json()
        kids = _write_signatures(out_dir, index_bytes, signers, created, made_dirs)
        write_file(out_dir / INDEX_NAME, index_bytes, created)  # last: its presence means complete
        state.fsync_dir(out_dir, tolerant=True)
    except OSError as exc:
        _undo(created, made_dirs)
        raise TvdeployError(f"{exc.filename or out_dir}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _undo(created, made_dirs)
        raise
    finally:
        os.close(src)
    return SplitResult(out_dir, index, hashlib.sha256(index_bytes).hexdigest(), kids)


def _open_bundle(bundle: Path) -> tuple[int, int]:
    try:
        fd, st = open_regular(bundle)
    except ChunkFileError as exc:
        if exc.kind == "missing":
            raise InputFileError(f"{bundle}: bundle not found") from None
        raise InputFileError(f"{bundle}: {exc}") from None
    if st.st_size == 0:
        os.close(fd)
        raise InputFileError(f"{bundle}: empty file, expected a bundle")
    return fd, st.st_size


def _conflicts(out_dir: Path, names: list[str]) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputFileError(f"{out_dir}: not a folder")
    for name in [INDEX_NAME, SIG_DIR, *names]:
        if os.path.lexists(out_dir / name):
            raise RefusedError(f"{out_dir}: already holds {name}; split into an empty folder or remove the "
                               "old chunks first")


def _write_chunks(bundle: Path, src: int, total_size: int, size: int, out_dir: Path, names: list[str],
                  created: list[Path], reporter: Reporter) -> tuple[tuple[Chunk, ...], str]:
    total = TotalHash()
    try:
        chunks = _write_each_chunk(bundle, src, total_size, size, out_dir, names, created, total, reporter)
    finally:
        total_sha256 = total.close()
    if os.read(src, 1):
        raise VerificationError(f"{bundle}: grew while being split; nothing was kept")
    return chunks, total_sha256


def _write_each_chunk(bundle: Path, src: int, total_size: int, size: int, out_dir: Path, names: list[str],
                      created: list[Path], total: TotalHash, reporter: Reporter) -> tuple[Chunk, ...]:
    buf = bytearray(min(BUFFER, size))
    chunks: list[Chunk] = []
    reporter.task("split", f"writing {len(names)} chunks to {out_dir}", total=total_size, unit="bytes")
    offset = 0
    for i, name in enumerate(names):
        want = min(size, total_size - offset)
        tmp = part_path(out_dir / name)
        dst = create_part(out_dir / name)
        created.append(tmp)
        try:
            sha, copied = pump(src, want, buf, reporter, "split", out=dst, total=total)
            os.fsync(dst)
        finally:
            os.close(dst)
        if copied != want:
            raise VerificationError(f"{bundle}: shrank while being split (chunk {i} got {copied} of {want} "
                                    "bytes); nothing was kept")
        os.rename(tmp, out_dir / name)
        created[-1] = out_dir / name
        chunks.append(Chunk(name, offset, want, sha))
        offset += want
    reporter.done("split")
    return tuple(chunks)


def _write_signatures(out_dir: Path, index_bytes: bytes, signers: list[tuple[Ed25519PrivateKey, str]],
                      created: list[Path], made_dirs: list[Path]) -> tuple[str, ...]:
    payload = statement.encode(index_statement(index_bytes))
    sig_dir = out_dir / SIG_DIR
    sig_dir.mkdir()
    made_dirs.append(sig_dir)
    kids: list[str] = []
    for key, kid in signers:
        if kid in kids:
            continue  # the same key twice counts once: write it once
        envelope = dsse.sign(PAYLOAD_TYPE, payload, key, kid)
        if not dsse.verify(envelope, envelope.signatures[0], key.public_key()):
            raise VerificationError(f"key {kid[:16]}: the new signature does not verify (key store damaged?)")
        write_file(sig_dir / f"{kid}.json", envelope.to_json(), created)
        kids.append(kid)
    return tuple(kids)


def _undo(created: list[Path], made_dirs: list[Path]) -> None:
    """Remove what this split wrote (never anything else), so a failure leaves no chunk folder
    that could pass for complete."""
    for path in reversed(created):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
    for d in reversed(made_dirs):
        try:
            d.rmdir()
        except OSError:
            pass
