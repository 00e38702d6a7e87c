"""Bundle build and verify against the obvious alternatives, on the lab's images.

    .venv/bin/python benchmarks/bundle_build.py --engine unix:///LAB/engine/docker.sock \
        --spec LAB/release-v1.yaml [--work DIR] [--rounds 2]

Measures, in one run:
- build time of ``tvdeploy bundle build`` against ``docker save`` of the same images to a file
  (target: at most 1.1x), best of --rounds each, alternating so both see the same caches;
- bundle size against the ``docker save`` file (target: within 1%);
- peak memory (max RSS of the build process, from wait4's rusage; target: under 200 MiB);
- verify throughput (``verify_bundle`` in-process, and the CLI end to end) against
  ``sha256sum`` over the same bytes (target: at least 0.8x).
Exits 1 when a target is missed (each line says met or MISSED).
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

ROOT = Path(__file__).resolve().parent.parent


def run_timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Wall time, peak RSS (KiB) and CPU seconds (user + sys) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True)
    ap.add_argument("--spec", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from tvdeploy.release.spec import load_release_spec

    refs = list(dict.fromkeys(load_release_spec(args.spec).images.values()))
    work = args.work or Path(tempfile.mkdtemp(prefix="tvdeploy-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    env = dict(os.environ, TVDEPLOY_HOME=str(home), DOCKER_HOST=args.engine)
    py = sys.executable
    tv = [py, "-m", "tvdeploy"]
    if not (home / "keys" / "operator.key").exists():
        subprocess.run([*tv, "keys", "generate", "operator", "--no-passphrase"], env=env, check=True,
                       capture_output=True)
        subprocess.run([*tv, "keys", "generate", "signer", "--no-passphrase"], env=env, check=True,
                       capture_output=True)
    docker = shutil.which("docker")
    if docker is None:
        sys.exit("the docker CLI is needed for the docker save baseline")
    save_file, bundle = work / "save.tar", work / "bundle.tar"
    print(f"{len(refs)} images from {args.engine}; work dir {work}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    # Warm-up: the engine's layer files and our imports into the page cache.
    run_timed([docker, "save", "-o", str(save_file), *refs], env)
    save_times, build_times, build_rss, save_cpu, build_cpu = [], [], [], [], []
    for _ in range(args.rounds):
        t, _rss, cpu = run_timed([docker, "save", "-o", str(save_file), *refs], env)
        save_times.append(t)
        save_cpu.append(cpu)
        t, rss, cpu = run_timed([*tv, "bundle", "build", str(args.spec), "--engine", args.engine,
                                 "-o", str(bundle)], env)
        build_times.append(t)
        build_rss.append(rss)
        build_cpu.append(cpu)
    save_t, build_t = min(save_times), min(build_times)
    save_size, bundle_size = save_file.stat().st_size, bundle.stat().st_size
    peak_mib = max(build_rss) / 1024
    print(f"docker save:   {save_t:6.2f} s   {save_size / 2**20:8.1f} MiB")
    print(f"bundle build:  {build_t:6.2f} s   {bundle_size / 2**20:8.1f} MiB   peak RSS {peak_mib:.0f} MiB")
    missed: list[str] = []

    def target(name: str, ok: bool) -> str:
        if not ok:
            missed.append(name)
        return "met" if ok else "MISSED"

    print(f"build time ratio (bundle/docker save): {build_t / save_t:.2f}x   (target <= 1.10x: "
          f"{target('build time', build_t / save_t <= 1.10)})")
    print(f"client CPU (user+sys, best): docker save {min(save_cpu):.2f} s, bundle build {min(build_cpu):.2f} s "
          "(the engine's own work is the same for both)")
    print(f"size ratio (bundle/docker save):       {bundle_size / save_size:.4f}   (target within 1%: "
          f"{target('size', abs(bundle_size / save_size - 1) <= 0.01)})")
    print(f"build peak memory: {peak_mib:.0f} MiB   (target < 200 MiB: {target('memory', peak_mib < 200)})")

    # Verify throughput: sign once (threshold 1), then re-hash everything vs sha256sum.
    pub = work / "signer.pub"
    root = work / "root.json"
    if not root.exists():
        subprocess.run([*tv, "keys", "export-public", "signer", "-o", str(pub), "--force"], env=env, check=True,
                       capture_output=True)
        subprocess.run([*tv, "keys", "generate", "root", "--no-passphrase"], env=env, check=True,
                       capture_output=True)
        subprocess.run([*tv, "trust", "init", "-o", str(root), "--signer", str(pub), "--threshold", "1",
                        "--root-key", "root", "--expires", "2099-01-01"], env=env, check=True, capture_output=True)
    subprocess.run([*tv, "bundle", "sign", str(bundle), "--key", "signer"], env=env, check=True,
                   capture_output=True)
    size = bundle.stat().st_size
    run_timed(["sha256sum", str(bundle)])  # warm the page cache
    sums = [run_timed(["sha256sum", str(bundle)])[0] for _ in range(3)]
    os.environ["TVDEPLOY_HOME"] = str(home)
    from tvdeploy.bundle.verify import verify_bundle

    inproc = []
    for _ in range(3):
        start = time.perf_counter()
        verify_bundle(bundle, root)
        inproc.append(time.perf_counter() - start)
    cli = [run_timed([*tv, "bundle", "verify", str(bundle), "--trust", str(root)], env)[0] for _ in range(2)]
    s, v, c = min(sums), min(inproc), min(cli)
    print(f"sha256sum:            {s:6.2f} s  {size / s / 2**20:7.0f} MiB/s")
    print(f"verify (in-process):  {v:6.2f} s  {size / v / 2**20:7.0f} MiB/s   ratio {s / v:.2f}x (target >= 0.8x: "
          f"{target('verify throughput', s / v >= 0.8)})")
    print(f"verify (CLI, e2e):    {c:6.2f} s  {size / c / 2**20:7.0f} MiB/s   ratio {s / c:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if missed:
        print(f"MISSED: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
