"""`swarm bootstrap` (TLS + swarm, from unconfigured nodes) of 1 node against 4 nodes, and the
no-op rerun, on two labs of this benchmark's own.

    .venv/bin/python benchmarks/bootstrap.py [--work DIR] [--rounds 3] [--keep]

Each round resets both labs to unconfigured nodes (`lab reset`, not timed), then times the CLI
end to end (a fresh process, as an operator runs it). Target: 4 nodes under 1.5x the single-node
time (the TLS part runs on the nodes in parallel and the swarm init starts as soon as the first
manager's API answers; manager joins stay one at a time to keep raft stable, with worker joins,
labels and networks beside them). The no-op rerun (pre-flight + plan, nothing to change) is timed
on the 4-node lab. Exits 1 when the target is missed.
Needs root and the lab's Debian packages, like `tvdeploy lab up`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.5


CPU: dict[str, float] = {"last": 0.0}  # operator-side CPU seconds of the last command


def tvdeploy(*args: str, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tvdeploy", *args], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"tvdeploy {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    phases = [ln.split(" applied in ", 1)[1] for ln in proc.stdout.splitlines() if " applied in " in ln]
    if phases:  # "6.2 s (pre-flight 1.4 s, tls 3.1 s, swarm 1.0 s)": where the time went
        print(f"  {args[0]} {args[1]}: {phases[0]}", flush=True)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="Folder for the two labs (default: a temp dir).")
    ap.add_argument("--rounds", type=int, default=3, help="Bootstraps per lab; the best is reported.")
    ap.add_argument("--keep", action="store_true", help="Leave the labs up afterwards.")
    args = ap.parse_args()

    work = (args.work or Path(tempfile.mkdtemp(prefix="tvbench-boot-"))).resolve()
    env = {**os.environ, "TVDEPLOY_HOME": str(work / "home"), "NO_COLOR": "1"}
    labs = {n: work / f"lab{n}" for n in (1, 4)}
    best: dict[int, float] = {}
    noop = 0.0
    try:
        for n, lab in labs.items():
            tvdeploy("lab", "up", "--dir", str(lab), "--nodes", str(n), env=env)
        for r in range(args.rounds):
            for n, lab in labs.items():
                if r > 0:
                    tvdeploy("lab", "reset", "--dir", str(lab), env=env)
                seconds = tvdeploy("swarm", "bootstrap", str(lab / "site.yaml"), "--yes", env=env)
                best[n] = min(best.get(n, seconds), seconds)
                print(
                    f"round {r + 1}: bootstrap of {n} node(s): {seconds:.2f} s (tvdeploy's own CPU "
                    f"{CPU['last']:.2f} s, load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        noop = tvdeploy("swarm", "bootstrap", str(labs[4] / "site.yaml"), "--yes", env=env)
    finally:
        if not args.keep:
            for lab in labs.values():
                subprocess.run(
                    [sys.executable, "-m", "tvdeploy", "lab", "down", "--dir", str(lab)],
                    env=env,
                    capture_output=True,
                    check=False,
                )
    # The lab's nodes share this machine's cores: the per-node work (dockerd restarts, probes)
    # that runs in parallel on real VMs competes for the same CPUs here, and other load on the
    # machine moves the numbers; the load average is printed with each round for that reason.
    ratio = best[4] / best[1]
    print(f"bootstrap (TLS + swarm), best of {args.rounds}: 1 node {best[1]:.2f} s, 4 nodes {best[4]:.2f} s")
    print(f"ratio 4/1 nodes: {ratio:.2f}x (target under {TARGET_RATIO}x): {'ok' if ratio < TARGET_RATIO else 'MISSED'}")
    print(f"no-op rerun on 4 nodes: {noop:.2f} s ({noop / best[4]:.2f}x of the 4-node bootstrap)")
    return 0 if ratio < TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
