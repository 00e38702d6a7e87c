"""CLI startup: median wall time of `tvdeploy --help` over 20 runs, against `python -c pass`.

Run: .venv/bin/python benchmarks/cli_startup.py [--runs N]
Target (issue 2): under 0.3 s; exits 1 when it is missed. The ratio says how much tvdeploy adds to a
bare interpreter start.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.3


def tvdeploy_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m tvdeploy`."""
    script = Path(sys.executable).with_name("tvdeploy")
    if script.exists():
        return [str(script)]
    found = shutil.which("tvdeploy")
    return [found] if found else [sys.executable, "-m", "tvdeploy"]


def median_wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    cmd = tvdeploy_command()
    median_wall([*cmd, "--help"], 2)  # warm the page cache and .pyc files
    baseline = median_wall([sys.executable, "-c", "pass"], args.runs)
    tool = median_wall([*cmd, "--help"], args.runs)
    print(f"command: {' '.join(cmd)} --help   runs: {args.runs}")
    print(f"python -c pass:   median {baseline * 1000:7.1f} ms")
    print(f"tvdeploy --help:  median {tool * 1000:7.1f} ms")
    print(f"ratio: {tool / baseline:.2f}x python -c pass; target < {TARGET_S * 1000:.0f} ms: "
          f"{'met' if tool < TARGET_S else 'NOT met'}")
    return 0 if tool < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
