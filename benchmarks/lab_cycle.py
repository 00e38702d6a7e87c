"""The lab's life cycle: `lab up` of 3 and of 6 nodes (fresh), memory per node, the no-op
second `lab up`, and `lab reset` against its obvious alternative, `lab down` + `lab up`.

    .venv/bin/python benchmarks/lab_cycle.py [--rounds 2]

Each command runs in a fresh process (as an operator runs it), on labs of this benchmark's own
(short dirs under /tmp), removed at the end. Needs root and the lab's Debian packages. No target
(a comparison): exits 0 unless a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tvdeploy(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tvdeploy", *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"tvdeploy {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="Repetitions; the best time is reported.")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (like tvdeploy lab up)")
    work = Path(tempfile.mkdtemp(prefix="tvb-", dir="/tmp"))
    try:
        for count in (3, 6):
            d = str(work / f"n{count}")
            ups, resets, cycles = [], [], []
            for _ in range(args.rounds):
                ups.append(tvdeploy("lab", "up", "--dir", d, "--nodes", str(count), "-q")[0])
                again = tvdeploy("lab", "up", "--dir", d, "--nodes", str(count), "-q")[0]
                resets.append(tvdeploy("lab", "reset", "--dir", d, "-q")[0])
                down = tvdeploy("lab", "down", "--dir", d, "-q")[0]
                cycles.append(down + tvdeploy("lab", "up", "--dir", d, "--nodes", str(count), "-q")[0])
                _, out = tvdeploy("lab", "status", "--dir", d, "--memory", "--json")
                mem = json.loads(out)["memory_kib"]
                tvdeploy("lab", "down", "--dir", d, "-q")
            per_node = [v for k, v in mem.items() if k != "build-engine"]
            print(f"{count} nodes: lab up (fresh) {min(ups):.1f} s, second lab up {again:.1f} s, "
                  f"memory per node {sum(per_node) / len(per_node) / 1024:.0f} MiB "
                  f"(build engine {mem['build-engine'] / 1024:.0f} MiB)")
            print(f"{count} nodes: lab reset {min(resets):.1f} s vs lab down + lab up {min(cycles):.1f} s "
                  f"-> reset is {min(cycles) / min(resets):.1f}x faster")
    finally:
        for sub in work.glob("n*"):
            subprocess.run([sys.executable, "-m", "tvdeploy", "lab", "down", "--dir", str(sub), "-q"],
                           capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
