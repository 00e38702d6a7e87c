"""Bundle commands on a chunk folder: read and verify the bundle without joining it to disk.

``verify_bundle_path(path, trust)`` is what ``bundle verify`` calls: a file is verified as a
bundle; a folder is verified as a chunk folder first (signed index, every chunk's size and
sha256; bad chunks are named) and then, through ``ChunkedReader``, exactly as a bundle file is:
the same reader, the same statement, the same signature judgement.

The bundle reader reads the ChunkedReader as it reads a file (``read_bundle(..., fileobj=)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from tvdeploy.bundle import reader, statement, trust
from tvdeploy.bundle.chunkindex import ChunkIndex
from tvdeploy.bundle.chunkio import ChunkedReader
from tvdeploy.bundle.chunkverify import ChunkReport, read_index, verify_chunk_dir
from tvdeploy.bundle.reader import Bundle
from tvdeploy.bundle.verify import VALID, Verified, judge, verify_bundle
from tvdeploy.errors import VerificationError
from tvdeploy.reporting import Reporter


@dataclass(frozen=True)
class PathVerified:
    verified: Verified
    chunks: ChunkReport | None  # None: *path* was a bundle file


def read_chunked_bundle(directory: Path, index: ChunkIndex, *, reporter: Reporter | None = None,
                        sink: reader.BlobSink | None = None) -> Bundle:
    """``read_bundle`` over the chunks of *directory*, in order, never joined on disk."""
    with ChunkedReader(Path(directory), index) as raw:
        fh = cast(BinaryIO, raw)  # read/readinto/seek/tell: all the reader uses
        return reader.read_bundle(Path(directory), reporter=reporter, sink=sink, fileobj=fh, total=index.size,
                                  description=f"reading {index.bundle} from {len(index.chunks)} chunks")


def read_bundle_path(path: Path, *, reporter: Reporter | None = None, sink: reader.BlobSink | None = None) -> Bundle:
    """``read_bundle`` for a bundle file or a chunk folder (for inspect and import). The chunk
    index is only a map here: every byte read is checked by the bundle reader as for a file."""
    path = Path(path)
    if not path.is_dir():
        return reader.read_bundle(path, reporter=reporter, sink=sink)
    _raw, index = read_index(path)
    return read_chunked_bundle(path, index, reporter=reporter, sink=sink)


def judge_bundle(bundle: Bundle, root: trust.Version, now: datetime) -> Verified:
    """The signature judgement of ``verify_bundle``, on a bundle already read."""
    expected = statement.for_bundle(bundle)
    counted: set[str] = set()
    checks = [judge(file, sig, env, expected, root, counted, now)
              for file, env in sorted(bundle.signatures.items()) for sig in env.signatures]
    if len(counted) < root.threshold:
        problems = [c for c in checks if c.status != VALID]
        why = f" ({problems[0].file}: key {problems[0].key_id[:16]}: {problems[0].status})" if problems else ""
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise VerificationError(
            f"{bundle.path}: signed by {len(counted)} of the {root.threshold} distinct trusted keys required"
            f"{why}{more}",
            details=[f"{c.file}: key {c.key_id[:16]}: {c.status}" for c in problems[1:]],
        )
    return Verified(bundle, root, tuple(checks))


def verify_bundle_path(path: Path, trust_path: Path, *, reporter: Reporter | None = None,
                       now: datetime | None = None) -> PathVerified:
    """Verify a bundle file, or a chunk folder and the bundle its chunks make up."""
    path = Path(path)
    if not path.is_dir():
        return PathVerified(verify_bundle(path, trust_path, reporter=reporter, now=now), None)
    now = now or datetime.now(UTC)
    report = verify_chunk_dir(path, trust_path, reporter=reporter, now=now)
    if not report.ok:
        raise report.failure()
    bundle = read_chunked_bundle(path, report.index, reporter=reporter)
    return PathVerified(judge_bundle(bundle, report.root, now), report)
