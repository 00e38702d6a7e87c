"""Split a bundle into numbered chunks for removable media, check a chunk folder, join it again.

A chunk folder holds ``<stem>.000``, ``<stem>.001``, ..., the index ``chunks.json`` (each
chunk's size and sha256, the whole bundle's size and sha256) and ``chunks.sig/<keyid>.json``,
DSSE envelopes over the index judged exactly like bundle signatures. Verification names exactly
the chunks that are missing, truncated, too long or corrupt, so only those are copied again.

Split reads the bundle once, hashing each chunk and the whole file on the way, and writes every
file under a temporary name that is renamed when complete; the index is renamed last, so a
folder without ``chunks.json`` is visibly unfinished. Join opens chunks read-only and never
deletes or changes one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tvdeploy.bundle import dsse, statement, trust
from tvdeploy.bundle.chunkindex import (
    INDEX_NAME,
    MAX_CHUNKS,
    MAX_INDEX,
    MAX_SIGNATURE,
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    SIG_DIR,
    SIG_FILE,
    Chunk,
    ChunkIndex,
    ChunkIndexError,
    chunk_count,
    chunk_names,
    index_statement,
    parse_index,
    safe_name,
    safe_stem,
)
from tvdeploy.bundle.chunkio import ChunkFileError, open_regular
from tvdeploy.bundle.sizes import format_size
from tvdeploy.bundle.verify import VALID, SignatureCheck, judge
from tvdeploy.errors import InputFileError, RefusedError, TvdeployError, VerificationError
from tvdeploy.reporting import NullReporter, Reporter

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)

BUFFER = 4 * 1024 * 1024
FILE_OVERHEAD = 4096  # a file system block per file written, for the free-space estimate
FreeSpace = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


# ---- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkProblem:
    name: str
    kind: str  # missing, truncated, too long, corrupt, not a regular file, unreadable
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class ChunkReport:
    dir: Path
    index: ChunkIndex
    index_sha256: str
    root: trust.Version
    checks: tuple[SignatureCheck, ...]
    problems: tuple[ChunkProblem, ...]
    extra: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_chunks(self) -> list[str]:
        return [p.name for p in self.problems]

    @property
    def signers(self) -> list[str]:
        return [c.key_id for c in self.checks if c.status == VALID]

    def failure(self) -> VerificationError:
        """The one-line error naming the bad chunks (beyond 8, the rest are the details)."""
        n, total = len(self.problems), len(self.index.chunks)
        listed = ", ".join(f"{p.name} ({p.kind})" for p in self.problems[:8])
        more = f" and {n - 8} more" if n > 8 else ""
        return VerificationError(
            f"{self.dir}: {n} of {total} chunks bad: {listed}{more}; copy {'it' if n == 1 else 'those'} again",
            details=[str(p) for p in self.problems[8:]],  # the first 8 are on the line already
        )


@dataclass(frozen=True)
class SplitResult:
    dir: Path
    index: ChunkIndex
    index_sha256: str
    signers: tuple[str, ...]


@dataclass(frozen=True)
class JoinResult:
    path: Path
    index: ChunkIndex
    signers: tuple[str, ...]


# ---- small file helpers -----------------------------------------------------------------------

class _TotalHash:
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


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some removable-media file systems cannot sync a folder; the files are synced
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, created: list[Path]) -> None:
    """Write *data* to a temporary name beside *path*, sync it, rename it (0644: chunk folders
    hold no secret and are copied around)."""
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    created.append(tmp)
    try:
        _write_all(fd, memoryview(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    created[-1] = path


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _preflight(target: Path, need: int, what: str, free_space: FreeSpace | None) -> None:
    probe = _existing_ancestor(target)
    free = (free_space or disk_free)(probe)
    if free < need:
        raise RefusedError(f"{target}: not enough free space for {what}: need {format_size(need)} "
                           f"({need} bytes), {format_size(free)} ({free} bytes) free on {probe}")


def _require_dir(directory: Path) -> None:
    if not directory.exists():
        raise InputFileError(f"{directory}: chunk folder not found")
    if not directory.is_dir():
        raise InputFileError(f"{directory}: not a folder, expected a chunk folder")


# ---- split ------------------------------------------------------------------------------------

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


def _copy_chunk(src: int, dst: int, size: int, buf: bytearray, total: _TotalHash,
                reporter: Reporter) -> tuple[str, int]:
    """Copy up to *size* bytes of *src* to *dst*; returns (sha256, bytes copied)."""
    digest = hashlib.sha256()
    view = memoryview(buf)
    copied = 0
    while copied < size:
        n = os.readv(src, [view[:min(len(view), size - copied)]])
        if n == 0:
            break
        with total.updating(view[:n]):
            digest.update(view[:n])
            _write_all(dst, view[:n])
        copied += n
        reporter.advance("split", n)
    return digest.hexdigest(), copied


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
        _preflight(out_dir, need, f"{count} chunks of {bundle.name}", free_space)
        if not out_dir.exists():
            out_dir.mkdir(parents=True)
            made_dirs.append(out_dir)
        chunks, total_sha256 = _write_chunks(bundle, src, total_size, size, out_dir, names, created, reporter)
        index = ChunkIndex(name, total_size, total_sha256, size, chunks)
        index_bytes = index.to_json()
        kids = _write_signatures(out_dir, index_bytes, signers, created, made_dirs)
        _write_file(out_dir / INDEX_NAME, index_bytes, created)  # last: its presence means complete
        _fsync_dir(out_dir)
    except OSError as exc:
        _undo(created, made_dirs)
        raise TvdeployError(f"{exc.filename or out_dir}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _undo(created, made_dirs)
        raise
    finally:
        os.close(src)
    return SplitResult(out_dir, index, hashlib.sha256(index_bytes).hexdigest(), kids)


def _write_chunks(bundle: Path, src: int, total_size: int, size: int, out_dir: Path, names: list[str],
                  created: list[Path], reporter: Reporter) -> tuple[tuple[Chunk, ...], str]:
    total = _TotalHash()
    try:
        chunks = _write_each_chunk(bundle, src, total_size, size, out_dir, names, created, total, reporter)
    finally:
        total_sha256 = total.close()
    if os.read(src, 1):
        raise VerificationError(f"{bundle}: grew while being split; nothing was kept")
    return chunks, total_sha256


def _write_each_chunk(bundle: Path, src: int, total_size: int, size: int, out_dir: Path, names: list[str],
                      created: list[Path], total: _TotalHash, reporter: Reporter) -> tuple[Chunk, ...]:
    buf = bytearray(min(BUFFER, size))
    chunks: list[Chunk] = []
    reporter.task("split", f"writing {len(names)} chunks to {out_dir}", total=total_size, unit="bytes")
    offset = 0
    for i, name in enumerate(names):
        want = min(size, total_size - offset)
        tmp = out_dir / f".{name}.part"
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        created.append(tmp)
        try:
            sha, copied = _copy_chunk(src, dst, want, buf, total, reporter)
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
        _write_file(sig_dir / f"{kid}.json", envelope.to_json(), created)
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


# ---- reading and verifying a chunk folder -------------------------------------------------------

def read_index(directory: Path) -> tuple[bytes, ChunkIndex]:
    """The bytes and the checked content of ``DIR/chunks.json``."""
    _require_dir(directory)
    path = directory / INDEX_NAME
    try:
        fd, st = open_regular(path)
    except ChunkFileError as exc:
        if exc.kind == "missing":
            raise InputFileError(f"{path}: chunk index not found (not a chunk folder, or the split did not "
                                 "finish)") from None
        raise InputFileError(f"{path}: {exc}") from None
    try:
        if st.st_size > MAX_INDEX:
            raise VerificationError(f"{path}: oversized chunk index ({st.st_size} bytes; at most {MAX_INDEX})")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_INDEX + 1)
    finally:
        os.close(fd)
    try:
        return data, parse_index(data)
    except ChunkIndexError as exc:
        raise VerificationError(f"{path}: {exc}") from None


def _load_envelopes(directory: Path) -> tuple[list[tuple[str, dsse.Envelope]], list[SignatureCheck], list[str]]:
    """(envelopes, checks of files that are not valid envelopes, unknown files) of chunks.sig/."""
    sig_dir = directory / SIG_DIR
    if sig_dir.is_symlink():
        raise VerificationError(f"{sig_dir}: is a symlink (refused; copy the folder itself)")
    if not sig_dir.is_dir():
        return [], [], []
    envelopes: list[tuple[str, dsse.Envelope]] = []
    bad: list[SignatureCheck] = []
    extra: list[str] = []
    for name in sorted(os.listdir(sig_dir)):
        rel = f"{SIG_DIR}/{name}"
        m = SIG_FILE.fullmatch(name)
        if not m:
            extra.append(rel)
            continue
        if len(envelopes) + len(bad) >= MAX_SIGNATURES:
            raise VerificationError(f"{sig_dir}: more than {MAX_SIGNATURES} signatures")
        try:
            fd, st = open_regular(sig_dir / name)
        except ChunkFileError as exc:
            bad.append(SignatureCheck(rel, m.group(1), str(exc)))
            continue
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_SIGNATURE + 1)
        if len(data) > MAX_SIGNATURE:
            bad.append(SignatureCheck(rel, m.group(1), f"oversized (more than {MAX_SIGNATURE} bytes)"))
            continue
        try:
            envelopes.append((rel, dsse.parse(data)))
        except dsse.EnvelopeError as exc:
            bad.append(SignatureCheck(rel, m.group(1), f"not a valid envelope: {exc}"))
    return envelopes, bad, extra


def check_index_signatures(directory: Path, index_bytes: bytes, root: trust.Version,
                           now: datetime) -> tuple[tuple[SignatureCheck, ...], list[str]]:
    """Judge every signature over the index like a bundle signature; the threshold of distinct,
    trusted, unexpired, unrevoked keys must be met. Returns (checks, unknown files in chunks.sig)."""
    envelopes, bad, extra = _load_envelopes(directory)
    expected = index_statement(index_bytes)
    counted: set[str] = set()
    checks = bad + [judge(file, sig, env, expected, root, counted, now)
                    for file, env in envelopes for sig in env.signatures]
    if len(counted) < root.threshold:
        problems = [c for c in checks if c.status != VALID]
        why = f" ({problems[0].file}: key {problems[0].key_id[:16]}: {problems[0].status})" if problems else ""
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise VerificationError(
            f"{directory / INDEX_NAME}: signed by {len(counted)} of the {root.threshold} distinct trusted keys "
            f"required{why}{more}",
            details=[f"{c.file}: key {c.key_id[:16]}: {c.status}" for c in problems[1:]],
        )
    return tuple(checks), extra


def check_chunk(directory: Path, chunk: Chunk, buf: bytearray, reporter: Reporter) -> ChunkProblem | None:
    try:
        fd, st = open_regular(directory / chunk.name)
    except ChunkFileError as exc:
        return ChunkProblem(chunk.name, exc.kind, exc.detail)
    try:
        if st.st_size < chunk.size:
            return ChunkProblem(chunk.name, "truncated", f"{st.st_size} of {chunk.size} bytes")
        if st.st_size > chunk.size:
            return ChunkProblem(chunk.name, "too long", f"{st.st_size} bytes, expected {chunk.size}")
        digest = hashlib.sha256()
        view = memoryview(buf)
        done = 0
        while done < chunk.size:
            n = os.readv(fd, [view[:min(len(view), chunk.size - done)]])
            if n == 0:
                return ChunkProblem(chunk.name, "truncated", f"ends after {done} of {chunk.size} bytes")
            digest.update(view[:n])
            done += n
            reporter.advance("verify", n)
    except OSError as exc:
        return ChunkProblem(chunk.name, "unreadable", exc.strerror or str(exc))
    finally:
        os.close(fd)
    if digest.hexdigest() != chunk.sha256:
        return ChunkProblem(chunk.name, "corrupt", f"sha256 {digest.hexdigest()[:16]}..., "
                                                    f"expected {chunk.sha256[:16]}...")
    return None


def extra_files(directory: Path, index: ChunkIndex) -> list[str]:
    known = {INDEX_NAME, SIG_DIR} | {c.name for c in index.chunks}
    return sorted(n for n in os.listdir(directory) if n not in known)


def verify_chunk_dir(directory: Path, trust_path: Path, *, reporter: Reporter | None = None,
                     now: datetime | None = None) -> ChunkReport:
    """Check the index's signatures against the trust root, then every chunk's presence, size and
    sha256. Signature failures raise; bad chunks are listed in the report (all of them)."""
    reporter = reporter or NullReporter()
    directory = Path(directory)
    now = now or datetime.now(UTC)
    _chain, root = trust.load_verified(Path(trust_path), now)
    index_bytes, index = read_index(directory)
    checks, sig_extra = check_index_signatures(directory, index_bytes, root, now)
    buf = bytearray(min(BUFFER, index.chunk_size))
    reporter.task("verify", f"checking {len(index.chunks)} chunks in {directory}", total=index.size, unit="bytes")
    problems = [p for c in index.chunks if (p := check_chunk(directory, c, buf, reporter)) is not None]
    reporter.done("verify")
    return ChunkReport(directory, index, hashlib.sha256(index_bytes).hexdigest(), root, checks,
                       tuple(problems), tuple(extra_files(directory, index) + sig_extra))


# ---- join -------------------------------------------------------------------------------------

def _append_chunk(directory: Path, chunk: Chunk, out: int, buf: bytearray, total: _TotalHash,
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
        digest = hashlib.sha256()
        view = memoryview(buf)
        done = 0
        while done < chunk.size:
            n = os.readv(fd, [view[:min(len(view), chunk.size - done)]])
            if n == 0:
                raise VerificationError(f"{path}: truncated while being read; copy it again")
            with total.updating(view[:n]):
                digest.update(view[:n])
                _write_all(out, view[:n])
            done += n
            reporter.advance("join", n)
    finally:
        os.close(fd)
    if digest.hexdigest() != chunk.sha256:
        raise VerificationError(f"{path}: corrupt (sha256 does not match the index); copy it again")


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
    _preflight(out, index.size + FILE_OVERHEAD, f"the {format_size(index.size)} bundle", free_space)
    tmp = out.with_name(f".{out.name}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise TvdeployError(f"{tmp}: cannot write: {exc.strerror or exc}") from None
    total = _TotalHash()
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
        _fsync_dir(out.parent)
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
