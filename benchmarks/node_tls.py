"""Benchmark: `tls apply` on lab nodes (real sshd + dockerd in namespaces).

1. `tls apply` on 1 unconfigured node against 4 unconfigured nodes in one run (target: 4 nodes
   under 1.5x the single-node time), and against the obvious alternative: the 4 nodes configured
   one after the other (four single-node runs).
2. The no-op rerun on the 4 configured nodes (facts over SSH, nothing changes).
Exits 1 when the target of 1. is missed (median of --repeat runs).

Run as root on a lab machine:  .venv/bin/python benchmarks/node_tls.py [--lab-dir DIR]
The lab (4 nodes) is brought up in --lab-dir and left up; `tvdeploy lab down --dir DIR` removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NODES = 4


def _lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tvdeploy", "lab", *args], check=True, capture_output=True)


def _cli(*argv: str) -> float:
    from tvdeploy.cli import options
    from tvdeploy.cli.app import run

    options.OPTIONS.__dict__.update(options.GlobalOptions().__dict__)
    start = time.perf_counter()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        code = run([*argv, "--yes", "-q"])
    took = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"tvdeploy {' '.join(argv)} exited {code}")
    return took


def _single_node_sites(work: Path, site_file: Path) -> list[Path]:
    doc = yaml.safe_load(site_file.read_text())
    out = []
    for node in doc["nodes"][:NODES]:
        one = copy.deepcopy(doc)
        one["nodes"] = [{**node, "role": "manager"}]
        path = work / f"site-{node['name']}.yaml"
        path.write_text(yaml.safe_dump(one, sort_keys=False))
        out.append(path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab-dir", default="/tmp/tvdeploy-bench-tls-lab")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (median)")
    args = parser.parse_args()
    lab = Path(args.lab_dir)
    _lab("up", "--dir", str(lab), "--nodes", str(NODES))
    site = lab / "site.yaml"
    with tempfile.TemporaryDirectory(prefix="tvdeploy-bench-tls-") as tmp:
        work = Path(tmp)
        os.environ["TVDEPLOY_HOME"] = str(work / "home")
        from tvdeploy.keys.store import generate_key, operator_key_name

        generate_key(operator_key_name(), passphrase=None)  # the audit log needs a signer
        singles = _single_node_sites(work, site)
        _cli("tls", "apply", str(singles[0]))  # warm-up: site CA, client certificate, imports

        one, four, serial, noop = [], [], [], []
        for _ in range(args.repeat):
            _lab("reset", "--dir", str(lab))
            one.append(_cli("tls", "apply", str(singles[0])))
            _lab("reset", "--dir", str(lab))
            four.append(_cli("tls", "apply", str(site)))
            noop.append(_cli("tls", "apply", str(site)))
            _lab("reset", "--dir", str(lab))
            serial.append(sum(_cli("tls", "apply", str(s)) for s in singles))
        m1, m4, ms, mn = (statistics.median(x) for x in (one, four, serial, noop))
        load = os.getloadavg()[0]
        print(f"tls apply on unconfigured lab nodes (median of {args.repeat}; {os.cpu_count()} cores, "
              f"load average {load:.1f} at the end):")
        print(f"  1 node                         {m1:6.2f} s")
        print(f"  {NODES} nodes, one run               {m4:6.2f} s   ratio to 1 node: {m4 / m1:.2f}x (target < 1.5x)")
        print(f"  {NODES} nodes, one after the other   {ms:6.2f} s   ratio to 1 node: {ms / m1:.2f}x")
        print(f"  one run vs one after the other: {ms / m4:.2f}x faster")
        # On a shared machine the load swings; the fastest runs show what the code can do.
        b1, b4 = min(one), min(four)
        print(f"  best of {args.repeat}: 1 node {b1:.2f} s, {NODES} nodes {b4:.2f} s, ratio {b4 / b1:.2f}x")
        print(f"  no-op rerun on {NODES} configured nodes {mn:6.2f} s")
        print(f"  target < 1.5x (median): {'met' if m4 / m1 < 1.5 else 'MISSED'}")
    return 0 if m4 / m1 < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
