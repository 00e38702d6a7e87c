"""`release hotfix` against `docker service update --image <digest> --detach=false`, and
`release rollback` against `docker stack deploy` of the previous release's compose file plus
convergence, on a 3-node lab of this benchmark's own (the setup of benchmarks/release_deploy.py).

    .venv/bin/python benchmarks/release_hotfix.py [--work DIR] [--small] [--keep]

Hot-fix: `cloud` from v2's digest while v1 runs (same update settings: the stack's update_config),
then back to v1 with docker's command. Rollback: v2 deployed, then `release rollback` (to v1),
against `docker stack deploy` of v1's compose file (from v2) until converged. Target: at most
1.1x each; exits 1 if missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from release_deploy import Bench  # noqa: E402

TARGET = 1.1


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="tvbench-hotfix-"))).resolve()
    b = Bench(work, args.small)
    try:
        b.setup()
        v1, images1 = b.compose_file("lab-v1")
        _v2, images2 = b.compose_file("lab-v2")
        b.tvdeploy("lab-v1")
        env = b.docker_env()
        tv_hotfix = timed(lambda: b.tv("release", "hotfix", b.site, "cloud", "--release", "lab-v2", "--yes"))
        dk_hotfix = timed(lambda: subprocess.run(
            ["docker", "service", "update", "--detach=false", "--no-resolve-image", "--image", images1["cloud"],
             "trueverit_cloud"], env=env, capture_output=True, check=True))
        b.tvdeploy("lab-v2")
        tv_rollback = timed(lambda: b.tv("release", "rollback", b.site, "--yes"))
        b.tvdeploy("lab-v2")
        dk_rollback = b.docker(v1, images1)
        del images2
    finally:
        if not args.keep:
            b.tv("lab", "down", "--dir", b.lab)
            shutil.rmtree(work, ignore_errors=True)
    ok = True
    rows = (("hot-fix one service", tv_hotfix, dk_hotfix, "docker service update --image"),
            ("rollback v2 -> v1", tv_rollback, dk_rollback, "docker stack deploy + converge"))
    for what, tv, dk, alt in rows:
        ratio = tv / dk
        ok &= ratio <= TARGET
        print(f"{what:20}: tvdeploy {tv:6.1f} s   {alt} {dk:6.1f} s   ratio {ratio:.2f}x (target <= {TARGET}x)")
    print(json.dumps({"hotfix": [tv_hotfix, dk_hotfix], "rollback": [tv_rollback, dk_rollback]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
