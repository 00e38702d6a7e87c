"""Chunk throughput: `bundle split` and verify-of-chunks against `split -b` + `sha256sum` over the
same bytes (issue 8), plus `bundle join` against a checked `cat`.

Run: .venv/bin/python benchmarks/bundle_chunks.py [--bundle FILE | --size-mib N] [--chunk 100MiB] [--runs 3]

Without --bundle a file of random bytes stands in (split and chunk verification do not look
inside the bundle). The baselines do the same work as tvdeploy, as shell tools would: split is
`split -b` + `sync` of the chunks (tvdeploy fsyncs each chunk) + `sha256sum` of the chunks (the
index); verify is `sha256sum` of the chunks; join is `sha256sum -c` of the chunks + `cat` + `sync`.
Medians of --runs runs, page cache warm for both. A ratio above 1 means tvdeploy is faster. No
target (a comparison): exits 0 unless a step fails.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_time(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.bundle import trust
    from tvdeploy.bundle.chunkjoin import join_chunks
    from tvdeploy.bundle.chunksplit import split_bundle
    from tvdeploy.bundle.chunkverify import read_index, verify_chunk_dir
    from tvdeploy.bundle.sizes import format_size, parse_size
    from tvdeploy.keys.store import key_id

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle (or any file) to split")
    parser.add_argument("--size-mib", type=int, default=256, help="size of the random stand-in file")
    parser.add_argument("--chunk", default="100MiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    chunk = parse_size(args.chunk)

    work = Path(tempfile.mkdtemp(prefix="bench-chunks-", dir=args.workdir))
    try:
        source = args.bundle
        if source is None:
            source = work / "bundle.tar"
            block = os.urandom(1 << 20)
            with open(source, "wb") as fh:
                for i in range(args.size_mib):
                    fh.write(block[i % 256:] + block[:i % 256])
        size = source.stat().st_size
        key = Ed25519PrivateKey.generate()
        kid = key_id(key.public_key())
        root = work / "root.json"
        chain = trust.init_chain(signers=[key.public_key()], threshold=1, root_keys=[key], root_threshold=None,
                                 expires=datetime.now(UTC) + timedelta(days=1))
        root.write_bytes(trust.chain_document(chain))
        ours, theirs = work / "ours", work / "theirs"

        def clear() -> None:
            for d in (ours, theirs):
                shutil.rmtree(d, ignore_errors=True)
            theirs.mkdir()

        def baseline_split() -> None:
            sh("split", "-b", str(chunk), "-d", "-a", "3", str(source), str(theirs / "bundle."))
            parts = sorted(glob.glob(str(theirs / "bundle.*")))
            sh("sync", *parts)
            with open(theirs / "SHA256SUMS", "wb") as out:
                subprocess.run(["sha256sum", *parts], check=True, stdout=out)

        def baseline_verify() -> None:
            sh("sha256sum", *sorted(glob.glob(str(theirs / "bundle.*"))))

        sh("cat", str(source))  # warm the page cache
        t_split = median_time(lambda: split_bundle(source, chunk, ours, [(key, kid)]), args.runs, clear)
        b_split = median_time(baseline_split, args.runs, clear)
        split_bundle(source, chunk, ours, [(key, kid)])
        baseline_split()
        t_verify = median_time(lambda: verify_chunk_dir(ours, root), args.runs)
        b_verify = median_time(baseline_verify, args.runs)
        joined, catted = work / "joined.tar", work / "catted.tar"

        def unjoin() -> None:
            for p in (joined, catted):
                p.unlink(missing_ok=True)

        def baseline_join() -> None:
            subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], check=True, cwd=theirs)
            with open(catted, "wb") as out:
                subprocess.run(["cat", *sorted(glob.glob(str(theirs / "bundle.*")))], check=True, stdout=out)
            sh("sync", str(catted))

        t_join = median_time(lambda: join_chunks(ours, joined, trust_path=root), args.runs, unjoin)
        b_join = median_time(baseline_join, args.runs, unjoin)
        count = len(read_index(ours)[1].chunks)
        mib = size / (1 << 20)
        print(f"input: {source} ({format_size(size)}), chunks of {format_size(chunk)}: {count}; "
              f"runs: {args.runs} (median)")
        rows = [("split (+index, signed)", t_split, "split -b + sync + sha256sum", b_split),
                ("verify chunks (signed)", t_verify, "sha256sum of the chunks", b_verify),
                ("join (checked)", t_join, "sha256sum -c + cat + sync", b_join)]
        for name, t, bname, b in rows:
            print(f"{name:24s} {t:6.2f} s {mib / t:7.0f} MiB/s | {bname:28s} {b:6.2f} s {mib / b:7.0f} MiB/s"
                  f" | ratio {b / t:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
