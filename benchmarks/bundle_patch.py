"""Byte-level patches and compressed bundles (issue 18), on the lab's large-layer images.

1. The one-file hot-fix (release-large-v1 -> release-large-v2: cloud's large application layer
   with one 1 MiB file changed) as a patched delta, against (a) the layer-level delta
   (``--no-patches``), (b) ``docker save`` of the changed image, (c) the changed file's size.
   Target: patched delta <= 2 x the changed file + the manifests and configs the delta ships.
2. Build time and import time (verify + patch check + push into a real registry on loopback:
   Debian's docker-registry, v1 pushed first) of the patched delta against the layer-level one.
3. ``--compress`` (build + compress, the full release-large-v2 bundle) against
   ``docker save | zstd -T0`` of the same images. Target: size within 5%, time at most 1.2x.

Run (the lab up; builds the large-layer images at --large-size unless --no-images):
    .venv/bin/python benchmarks/bundle_patch.py [--lab-dir /tmp/tvdeploy-test-lab] [--large-size 60MiB]
Exits 1 when a target is missed. One run each; ratios are for the note, not for CI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 1 << 20


def timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def build(out: Path, spec: Any, engine: str, since: Any = None, patches: bool = True) -> tuple[Any, float]:
    from tvdeploy.bundle.writer import build_from_engine

    return timed(build_from_engine, out, spec, engine, since=since, patches=patches)


def sign(path: Path, key: Any) -> None:
    from tvdeploy.bundle.sign import sign_bundle
    from tvdeploy.keys.store import key_id

    sign_bundle(path, key, key_id(key.public_key()))


def trust_root(path: Path, key: Any) -> Path:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.bundle.trust import chain_document, init_chain

    chain = init_chain(signers=[key.public_key()], threshold=1, root_keys=[Ed25519PrivateKey.generate()],
                       root_threshold=None, expires=datetime.now(UTC) + timedelta(days=30))
    path.write_bytes(chain_document(chain))
    return path


def push(reg: Any, bundle: Path, trust: Path, work: Path, check: bool = True) -> float:
    """verify + (delta check, patch check) + push every image: the registry half of an import."""
    from tests.unit.tls_helpers import make_site
    from tvdeploy.bundle.chunkbundle import verify_bundle_path
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.execute.import_patches import drop_rebuilt
    from tvdeploy.execute.import_records import JournalFile
    from tvdeploy.execute.import_registry import check_delta_on_registry, push_image
    from tvdeploy.release import import_state as S
    from tvdeploy.reporting import NullReporter

    start = time.perf_counter()
    bf = BundleFile(verify_bundle_path(bundle, trust))
    images = bf.images()
    if check:
        (work / "rebuilt").mkdir(parents=True, exist_ok=True)
        check_delta_on_registry(reg, images, bf.shipped, str(bundle), bf, work / "rebuilt")
    site = make_site(work)
    jfile = JournalFile(site)
    journal = S.Journal(bf.bundle.manifest_sha256, "bench", 1, "site-registry")
    jfile.start(journal)
    with bf.open() as fh:
        for img in images:
            push_image(reg, bf, fh, img, images, {}, journal, jfile, NullReporter())
    drop_rebuilt(bf)
    return time.perf_counter() - start


@contextlib.contextmanager
def registry(folder: Path) -> Iterator[tuple[int, Path]]:
    """Debian's docker-registry on loopback over TLS (the test helper's CA and config), its log
    to a file: hundreds of requests would fill a pipe nobody reads and stall it."""
    try:
        from tests.integration import registry_server as rs
    except ImportError:  # before it moved out of tests/unit
        from tests.unit import registry_server as rs  # type: ignore[no-redef]

    ca, cert, key = rs.make_ca_and_cert(folder / "tls")
    (folder / "storage").mkdir(parents=True, exist_ok=True)
    port = rs._free_port()
    config = folder / "config.yml"
    config.write_text(rs.CONFIG.format(root=folder / "storage", port=port, cert=cert, key=key))
    with open(folder / "registry.log", "wb") as log:
        proc = subprocess.Popen([rs.BINARY, "serve", str(config)], stdout=log, stderr=log)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield port, ca
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def import_times(v1: Path, deltas: dict[str, Path], trust: Path, work: Path) -> dict[str, float]:
    from tvdeploy.connectors.registry import Registry

    out = {}
    for name, delta in deltas.items():
        with registry(work / f"reg-{name}") as (port, ca), Registry("127.0.0.1", port, ca) as reg:
            push(reg, v1, trust, work / f"site-{name}-v1", check=False)
            out[name] = push(reg, delta, trust, work / f"site-{name}-delta")
    return out


def main() -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tvdeploy.bundle.compress import Follower
    from tvdeploy.bundle.delta import since
    from tvdeploy.bundle.inventory import make_inventory, read_inventory
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.bundle.sizes import format_size
    from tvdeploy.keys.store import key_id
    from tvdeploy.lab.catalog import LARGE_FILE
    from tvdeploy.release.spec import load_release_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-dir", type=Path, default=Path("/tmp/tvdeploy-test-lab"))
    parser.add_argument("--large-size", default="60MiB", help="the large layer's size (lab images --large-size)")
    parser.add_argument("--no-images", action="store_true", help="use the large-layer images already built")
    parser.add_argument("--small", action="store_true", help="small base layers (lab images --small)")
    args = parser.parse_args()
    engine = f"unix://{args.lab_dir / 'engine' / 'docker.sock'}"
    if not args.no_images:
        cmd = [sys.executable, "-m", "tvdeploy", "lab", "images", "--dir", str(args.lab_dir), "--version", "1",
               "--large-layer", "--large-size", args.large_size] + (["--small"] if args.small else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    v1_spec = load_release_spec(args.lab_dir / "release-large-v1.yaml")
    v2_spec = load_release_spec(args.lab_dir / "release-large-v2.yaml")
    changed_ref = v2_spec.images["cloud"]

    work = Path(tempfile.mkdtemp(prefix="bench-patch-", dir=os.environ.get("TMPDIR")))
    failed = []
    try:
        key = Ed25519PrivateKey.generate()
        trust = trust_root(work / "root.json", key)
        v1, _t = build(work / "v1.tar", v1_spec, engine)
        sign(v1.path, key)
        have = work / "HAVE.json"
        have.write_bytes(make_inventory("bench", [f"sha256:{h}" for h in read_bundle(v1.path).blob_digests],
                                        None, (key, key_id(key.public_key()))))
        base = since(read_inventory(have, [key.public_key()]))
        layers, t_layers = build(work / "layers.tar", v2_spec, engine, base, patches=False)
        patched, t_patched = build(work / "patched.tar", v2_spec, engine, base)
        for b in (layers, patched):
            sign(b.path, key)
        pb = read_bundle(patched.path)
        patch_blobs = {p.patch for p in pb.patches.values()}
        metadata = sum(r.size for p, r in pb.files.items() if p.startswith("blobs/") and p[13:] not in patch_blobs)
        save = work / "changed.tar"
        subprocess.run(["docker", "-H", engine, "save", "-o", str(save), changed_ref], check=True)
        size = patched.path.stat().st_size
        target = 2 * LARGE_FILE + metadata
        print(f"large layer {args.large_size}, changed file {format_size(LARGE_FILE)}; "
              f"{len(pb.patches)} patched layer(s), patch {format_size(size - metadata)} of the bundle")
        print(f"patched delta:      {size:>12} B")
        print(f"(a) layer delta:    {layers.path.stat().st_size:>12} B  ratio {size / layers.path.stat().st_size:.4f}")
        print(f"(b) docker save:    {save.stat().st_size:>12} B  ratio {size / save.stat().st_size:.4f}")
        print(f"(c) changed file:   {LARGE_FILE:>12} B  ratio {size / LARGE_FILE:.2f} "
              f"(target <= 2 + metadata {format_size(metadata)}: {size} <= {target})")
        if size > target:
            failed.append("patched delta larger than 2 x the changed file + metadata")
        times = import_times(v1.path, {"layers": layers.path, "patched": patched.path}, trust, work)
        print(f"build: patched {t_patched:.2f} s, layer-level {t_layers:.2f} s, ratio {t_patched / t_layers:.2f}")
        print(f"import (verify+check+push): patched {times['patched']:.2f} s, layer-level {times['layers']:.2f} s, "
              f"ratio {times['patched'] / times['layers']:.2f}")

        # 3. --compress against docker save | zstd -T0 of the same images.
        refs = list(dict.fromkeys(v2_spec.images.values()))
        from tvdeploy.bundle.writer import build_from_engine

        start = time.perf_counter()  # as bundle build --compress: compressed while written
        follower = Follower(work / "full.tar.zst")
        build_from_engine(work / "full.tar", v2_spec, engine, follower=follower)
        packed = follower.finish()
        t_ours = time.perf_counter() - start
        _full, t_plain = build(work / "plain.tar", v2_spec, engine)
        start = time.perf_counter()
        with open(work / "save.tar.zst", "wb") as out:
            save_proc = subprocess.Popen(["docker", "-H", engine, "save", *refs], stdout=subprocess.PIPE)
            subprocess.run(["zstd", "-q", "-T0", "-c"], stdin=save_proc.stdout, stdout=out, check=True)
            assert save_proc.stdout is not None
            save_proc.stdout.close()
            save_proc.wait()
        t_ref = time.perf_counter() - start
        ref_size = (work / "save.tar.zst").stat().st_size
        print(f"--compress: {packed.size} B in {t_ours:.2f} s (plain {packed.plain_size} B); "
              f"docker save | zstd -T0: {ref_size} B in {t_ref:.2f} s; size ratio {packed.size / ref_size:.4f}, "
              f"time ratio {t_ours / t_ref:.2f} (plain build alone {t_plain:.2f} s)")
        if packed.size > 1.05 * ref_size:
            failed.append("compressed bundle more than 5% larger than docker save | zstd -T0")
        if t_ours > 1.2 * t_ref:
            failed.append("build --compress slower than 1.2 x docker save | zstd -T0")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for f in failed:
        print(f"MISSED: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
