"""Delta size (issue 8): a one-service hot-fix delta built against an inventory of version 1,
against that image's full `docker save` and against the sum of its changed layers (target: no
more than changed layers + 1 MiB; exits 1 when it is missed); also against a full bundle of the same
release. Then the chunk split / verify throughput of benchmarks/bundle_chunks.py (against `split` +
`sha256sum`).

Run (the lab up, `tvdeploy lab images [--small]` done):
    .venv/bin/python benchmarks/bundle_delta.py [--lab-dir /tmp/tvdeploy-test-lab] [--service cloud]
        [--chunk 100MiB] [--chunk-size-mib 256] [--no-chunks]

The inventory is made with make_inventory from the v1 bundle's blobs (what a site that imported
v1 holds). Sizes do not depend on timing; build times are one run each, for orientation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 1 << 20


def lab_engine(lab_dir: Path) -> str:
    return f"unix://{lab_dir / 'engine' / 'docker.sock'}"  # where `lab up` runs the build engine


def docker_save_size(engine: str, ref: str, out: Path) -> int:
    subprocess.run(["docker", "-H", engine, "save", "-o", str(out), ref], check=True)
    return out.stat().st_size


def build(out: Path, spec: object, engine: str, since: object = None) -> tuple[object, float]:
    from tvdeploy.bundle.writer import build_from_engine

    start = time.perf_counter()
    built = build_from_engine(out, spec, engine, since=since)  # type: ignore[arg-type]
    return built, time.perf_counter() - start


def main() -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.bundle.delta import since
    from tvdeploy.bundle.inventory import make_inventory, read_inventory
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.bundle.sizes import format_size
    from tvdeploy.keys.store import key_id
    from tvdeploy.release.spec import ReleaseSpec, load_release_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-dir", type=Path, default=Path("/tmp/tvdeploy-test-lab"))
    parser.add_argument("--engine", help="build engine (default: the lab's)")
    parser.add_argument("--service", default="cloud", help="the hot-fixed service (v2; all others v1)")
    parser.add_argument("--chunk", default="100MiB", help="chunk size for the chunk throughput run")
    parser.add_argument("--chunk-size-mib", type=int, default=256, help="bytes for the chunk throughput run")
    parser.add_argument("--no-chunks", action="store_true", help="skip the chunk throughput run")
    args = parser.parse_args()
    engine = args.engine or lab_engine(args.lab_dir)
    v1 = load_release_spec(args.lab_dir / "release-v1.yaml")
    v2 = load_release_spec(args.lab_dir / "release-v2.yaml")
    svc = args.service
    hotfix = ReleaseSpec.model_validate({
        "release": "bench-hotfix", "sequence": 2,
        "images": {s: (v2.images[s] if s == svc else ref) for s, ref in v1.images.items()}})

    work = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    try:
        key = Ed25519PrivateKey.generate()
        full_v1, t_v1 = build(work / "v1.tar", v1, engine)
        have = work / "HAVE.json"
        have.write_bytes(make_inventory("bench", [f"sha256:{h}" for h in read_bundle(full_v1.path).blob_digests],
                                        None, (key, key_id(key.public_key()))))
        base = since(read_inventory(have, [key.public_key()]))
        delta, t_delta = build(work / "delta.tar", hotfix, engine, base)
        full_hotfix, t_full = build(work / "hotfix-full.tar", hotfix, engine)
        saved = docker_save_size(engine, hotfix.images[svc], work / "save.tar")

        d = read_bundle(delta.path)
        v1_layers = {lay["digest"] for i in read_bundle(full_v1.path).inventory["images"].values()
                     for lay in i["layers"]}
        layers = d.inventory["images"][svc]["layers"]
        changed = [lay for lay in layers if lay["digest"] not in v1_layers]
        changed_bytes = sum(lay["size"] for lay in changed)
        dsize = delta.size
        print(f"engine {engine}; hot-fix: {svc} at {hotfix.images[svc]}, {len(hotfix.images) - 1} other services at v1")
        print(f"delta bundle                 {dsize:>12,d} B  {format_size(dsize):>10s}  "
              f"({len(d.blob_digests)} blobs shipped, {len(d.expected)} expected on site); build {t_delta:.2f} s")
        print(f"docker save of {svc:13s} {saved:>12,d} B  {format_size(saved):>10s}  "
              f"delta / save = {dsize / saved:.3f} ({saved / dsize:.1f}x smaller)")
        print(f"full bundle of the hot-fix   {full_hotfix.size:>12,d} B  {format_size(full_hotfix.size):>10s}  "
              f"delta / full = {dsize / full_hotfix.size:.4f} ({full_hotfix.size / dsize:.1f}x smaller); "
              f"build {t_full:.2f} s")
        print(f"changed layers ({len(changed)})           {changed_bytes:>12,d} B  {format_size(changed_bytes):>10s}  "
              f"delta - changed = {dsize - changed_bytes:,d} B ({(dsize - changed_bytes) / MIB:.3f} MiB; "
              f"target <= 1 MiB: {'met' if dsize <= changed_bytes + MIB else 'MISSED'})")
        missed = dsize > changed_bytes + MIB
        print(f"(v1 full bundle: {format_size(full_v1.size)}, build {t_v1:.2f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.no_chunks:
        return 1 if missed else 0
    print("\nchunk throughput (benchmarks/bundle_chunks.py):", flush=True)
    chunks = Path(__file__).with_name("bundle_chunks.py")
    code = subprocess.run([sys.executable, str(chunks), "--size-mib", str(args.chunk_size_mib), "--chunk",
                           args.chunk], env=dict(os.environ), check=False).returncode
    return 1 if missed else code


if __name__ == "__main__":
    sys.exit(main())
