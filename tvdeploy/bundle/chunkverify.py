"""Check a chunk folder: the signatures over its index (judged exactly like bundle signatures),
then every chunk's presence, size and sha256. Verification names exactly the chunks that are
missing, truncated, too long or corrupt, so only those are copied again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tvdeploy.bundle import dsse, trust
from tvdeploy.bundle.chunkindex import (
    INDEX_NAME,
    MAX_INDEX,
    MAX_SIGNATURE,
    MAX_SIGNATURES,
    SIG_DIR,
    SIG_FILE,
    Chunk,
    ChunkIndex,
    ChunkIndexError,
    index_statement,
    parse_index,
)
from tvdeploy.bundle.chunkio import BUFFER, ChunkFileError, open_regular, pump, require_dir
from tvdeploy.bundle.verify import VALID, SignatureCheck, judge
from tvdeploy.errors import InputFileError, VerificationError
from tvdeploy.reporting import NullReporter, Reporter


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


def read_index(directory: Path) -> tuple[bytes, ChunkIndex]:
    """The bytes and the checked content of ``DIR/chunks.json``."""
    require_dir(directory)
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
        sha, done = pump(fd, chunk.size, buf, reporter, "verify")
    except OSError as exc:
        return ChunkProblem(chunk.name, "unreadable", exc.strerror or str(exc))
    finally:
        os.close(fd)
    if done < chunk.size:
        return ChunkProblem(chunk.name, "truncated", f"ends after {done} of {chunk.size} bytes")
    if sha != chunk.sha256:
        return ChunkProblem(chunk.name, "corrupt", f"sha256 {sha[:16]}..., expected {chunk.sha256[:16]}...")
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
