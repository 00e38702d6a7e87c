"""Bundle import into the site registry against `docker load` of the same images on one node,
and the bytes a second release moves against the first, on a lab with a bootstrapped swarm.

    .venv/bin/python benchmarks/bundle_import.py --lab LAB_DIR --home TVDEPLOY_HOME [--small] [--work DIR]

The lab must be up with its swarm bootstrapped (tvdeploy swarm bootstrap LAB/site.yaml --yes)
from --home. Steps, in one run:
1. ``tvdeploy lab images`` (full size unless --small), then v1 and v2 bundles built and signed.
2. Baseline: ``docker save`` of v1's images from the build engine to a file (not timed), then
   ``docker load`` of that file into the last node over its mutual-TLS API (timed; the images are
   removed from the node first).
3. ``tvdeploy bundle import`` of v1 into a wiped site registry (timed end to end: strict verify,
   registry deploy from the bundle onto every manager, pushes to every replica at once,
   read-back from each); then ``bundle inventory``, a v2 delta built ``--since`` it, and its
   import (bytes moved against v1's, per replica).
Prints the time ratio and the bytes ratio (no target: a comparison; exits 0 unless a step fails). The
site registry is wiped before and stays filled after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def tv(home: Path, *args: object, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        sys.exit(f"tvdeploy {' '.join(map(str, args[:3]))} failed: {proc.stderr.strip()[-1500:]}")
    return proc


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def wipe_registry(site_file: Path) -> None:
    """Remove the registry service, then on every manager its volume and image, and the import
    records: a first import (every replica filled from nothing)."""
    import docker.errors

    from tvdeploy.config.load import load_site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.execute import site_registry as R
    from tvdeploy.execute.import_records import SITE_RECORD, imports_dir

    site = load_site(site_file)
    apis = [R.docker_client(site, node).api for node in site.managers]
    svc = R.find_service(apis[0])
    if svc is not None:
        apis[0].remove_service(svc["ID"])
        label = {"label": f"com.docker.swarm.service.id={svc['ID']}"}
        for api in apis:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and api.containers(all=True, filters=label):
                time.sleep(0.5)
    for api in apis:
        for remove, name in ((api.remove_volume, R.VOLUME), (api.remove_image, "trueverit/registry:2.8")):
            try:
                remove(name)
            except docker.errors.NotFound:
                pass
        api.close()
    with SSHPool(site) as pool:
        for node in site.managers:
            pool.get(node.name).run(f"rm -f {SITE_RECORD}")
    shutil.rmtree(imports_dir(site), ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", required=True, type=Path)
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--small", action="store_true", help="the lab's small images (quick check)")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    os.environ["TVDEPLOY_HOME"] = str(args.home)
    work = args.work or Path(tempfile.mkdtemp(prefix="tvdeploy-bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    site_file = args.lab / "site.yaml"
    engine = f"unix://{args.lab / 'engine' / 'docker.sock'}"
    home = args.home
    print(f"lab {args.lab}; work dir {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    t, _ = timed(lambda: tv(home, "lab", "images", "--dir", args.lab, *(["--small"] if args.small else [])))
    print(f"lab images ({'small' if args.small else 'full size'}): {t:.0f} s")
    for name in ("bench-signer", "bench-root"):
        if not (home / "keys" / f"{name}.key").exists():
            tv(home, "keys", "generate", name, "--no-passphrase")
    root = work / "root.json"
    tv(home, "keys", "export-public", "bench-signer", "-o", work / "signer.pub", "--force")
    tv(home, "trust", "init", "-o", root, "--signer", work / "signer.pub", "--threshold", 1,
       "--root-key", "bench-root", "--expires", "2099-01-01")
    bundles = {}
    for v in ("v1", "v2"):
        bundles[v] = work / f"{v}.tar"
        tv(home, "bundle", "build", args.lab / f"release-{v}.yaml", "--engine", engine, "-o", bundles[v])
        tv(home, "bundle", "sign", bundles[v], "--key", "bench-signer")
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.config.load import load_site
    from tvdeploy.pki.ca import pki_paths

    v1 = read_bundle(bundles["v1"])
    refs = [img["reference"] for img in v1.release["images"].values()]
    site = load_site(site_file)
    print(f"v1 bundle: {len(refs)} images, {v1.size / 2**20:.1f} MiB")

    # Baseline: docker load into one node (the last one), images removed first.
    node = site.nodes[-1]
    save = work / "save.tar"
    subprocess.run(["docker", "-H", engine, "save", "-o", str(save), *refs], check=True)
    denv = {**os.environ, "DOCKER_HOST": f"tcp://{node.address}:2376", "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(pki_paths(site).client_dir)}
    subprocess.run(["docker", "rmi", "-f", *refs], env=denv, capture_output=True, check=False)
    t_load, _ = timed(lambda: subprocess.run(["docker", "load", "-q", "-i", str(save)], env=denv, check=True,
                                             capture_output=True))
    print(f"docker load on {node.name}:      {t_load:7.2f} s  ({save.stat().st_size / 2**20:.1f} MiB docker save file)")

    wipe_registry(site_file)
    t_import, proc = timed(lambda: tv(home, "bundle", "import", site_file, bundles["v1"], "--trust", root, "--yes",
                                      "--json"))
    full = json.loads(proc.stdout)
    print(f"bundle import v1 (site registry): {t_import:7.2f} s  (verify + registry deploy + push + read-back; "
          f"{full['bytes_moved'] / 2**20:.1f} MiB moved to each of {len(full.get('replicas') or {1: 1})} replicas)")
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in full["seconds"].items())
    print(f"  phases: {phases}; the rest is verify (re-hash of every byte), replay check, audit, CLI start")
    print(f"time ratio (import / docker load on one node): {t_import / t_load:.2f}x; "
          f"push phase alone: {full['seconds']['push'] / t_load:.2f}x")
    # The v2 delta, built against what the site holds after v1 (its signed inventory).
    have = work / "have.json"
    tv(home, "bundle", "inventory", site_file, "-o", have)
    v2d = work / "v2-delta.tar"
    tv(home, "bundle", "build", args.lab / "release-v2.yaml", "--engine", engine, "-o", v2d, "--since", have)
    tv(home, "bundle", "sign", v2d, "--key", "bench-signer")
    t_v2, proc = timed(lambda: tv(home, "bundle", "import", site_file, v2d, "--trust", root, "--yes", "--json"))
    delta = json.loads(proc.stdout)
    full_v2 = bundles["v2"].stat().st_size / 2**20
    print(f"v2 delta bundle: {v2d.stat().st_size / 1024:.1f} KiB (full v2 bundle {full_v2:.1f} MiB); "
          f"import {t_v2:.2f} s; moved {delta['bytes_moved']} bytes")
    print(f"bytes moved delta v2 / full v1: {delta['bytes_moved'] / full['bytes_moved']:.5f} "
          f"({delta['bytes_moved'] / 1024:.1f} KiB vs {full['bytes_moved'] / 2**20:.1f} MiB)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
