"""Benchmark: `tvdeploy audit report` on the 3-node lab running 18 services, with a 1,000-record
audit log. Target: under 5 s of wall time for `audit report` (the whole command, with the
copy of its own record to the managers); exits 1 when the median misses it. The --pdf run is
measured too (no target: the PDF of 1,000 records is ~60 pages).

The records are generated with the recorder into a COPY of the lab's state (the site file is
copied with another site name and state_dir, so the lab's own log and its managers' copies are
left alone; the copies the benchmark makes on the managers are removed at the end).

Needs a lab with the stack deployed (18 services), e.g. the one the lab test leaves behind:
    TVDEPLOY_TEST_REPORT_LAB_DIR=/tmp/tl-report TVDEPLOY_TEST_REPORT_LAB_HOME=/tmp/tl-report-home \\
        .venv/bin/python -m pytest tests/integration/test_audit_report_lab.py
    .venv/bin/python benchmarks/audit_report.py --lab-dir /tmp/tl-report --home /tmp/tl-report-home [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 5.0
RECORDS = 1000
BENCH_SITE = "lab-bench"


CPU: list[float] = []  # CPU seconds (user + sys) of each command run, for a loaded machine


def _tv(home: Path, *args: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, proc


def _bench_site(lab_dir: Path, work: Path) -> Path:
    doc = yaml.safe_load((lab_dir / "site.yaml").read_text())
    state = Path(doc.get("state_dir") or lab_dir / "state")
    copy = work / "state"
    shutil.copytree(state, copy, ignore=shutil.ignore_patterns("imports"))
    doc["site"]["name"] = BENCH_SITE
    doc["state_dir"] = str(copy)
    site = lab_dir / "site-bench.yaml"  # beside the lab's file: its relative paths stay valid
    site.write_text(yaml.safe_dump(doc, sort_keys=False))
    return site


def _fill(site_file: Path, home: Path) -> int:
    os.environ["TVDEPLOY_HOME"] = str(home)
    from tvdeploy.audit.recorder import append_record, site_log_path
    from tvdeploy.config.load import load_site

    site = load_site(site_file)
    path = site_log_path(site)
    have = path.read_bytes().count(b"\n") if path.exists() else 0
    for i in range(have, RECORDS):
        append_record(path, event="release.deploy", site=BENCH_SITE, outcome="success" if i % 7 else "failure",
                      objects=[{"type": "release", "name": f"bench-{i}", "sequence": str(i)},
                               {"type": "service", "name": "cloud", "digest": "sha256:" + f"{i:064x}"}])
    return path.read_bytes().count(b"\n")


def _remove_site_copies(site_file: Path, home: Path) -> None:
    from tvdeploy.config.load import load_site
    from tvdeploy.execute.ssh_pool import open_pool

    site = load_site(site_file)
    with open_pool(site) as pool:
        for node in site.managers:
            pool.get(node.name).run(f"rm -f /var/log/tvdeploy/audit/{BENCH_SITE}.log "
                                    f"/var/log/tvdeploy/audit/{BENCH_SITE}.checkpoints", check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab-dir", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    _t, status = _tv(args.home, "release", "status", args.lab_dir / "site.yaml", "--json")
    if status.returncode != 0 or len(json.loads(status.stdout)["services"]) != 18:
        print("the lab has no deployed stack of 18 services (see the docstring)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tvdeploy-bench-report-") as tmp:
        work = Path(tmp)
        site = _bench_site(args.lab_dir, work)
        try:
            records = _fill(site, args.home)
            out = work / "report"
            _tv(args.home, "audit", "report", site, "-o", out, "--json")  # warm-up: first copy to the managers
            walls, inner, cpus = [], [], []
            for _ in range(args.runs):
                wall, proc = _tv(args.home, "audit", "report", site, "-o", out, "--json")
                cpus.append(CPU[-1])
                if proc.returncode != 0:
                    raise SystemExit(f"audit report failed: {proc.stderr.strip()[-800:]}")
                walls.append(wall)
                inner.append(json.loads(proc.stdout)["timings"])
            pdf_wall, proc = _tv(args.home, "audit", "report", site, "-o", work / "report-pdf", "--pdf", "--json")
            if proc.returncode != 0:
                raise SystemExit(f"audit report --pdf failed: {proc.stderr.strip()[-800:]}")
            pdf_inner = json.loads(proc.stdout)["timings"]
            doc = json.loads((out / "report.json").read_text())
        finally:
            _remove_site_copies(site, args.home)
            site.unlink(missing_ok=True)
    median = statistics.median(walls)
    print(f"audit report on the lab: {len(doc['services']['rows'])} services, "
          f"{len(doc['inventory']['nodes']['rows'])} nodes, {doc['changes']['count']} audit records "
          f"(filled to {records})")
    runs = ", ".join(f"{w:.2f}" for w in walls)
    print(f"  wall time per run: {runs} s; median {median:.2f} s (target < {TARGET_S} s)")
    print(f"  CPU time of the command per run: {', '.join(f'{c:.2f}' for c in cpus)} s; "
          f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    last = inner[-1]
    parts = sorted(last.items(), key=lambda kv: -kv[1])
    print("  inside the last run: " + ", ".join(f"{k} {v:.2f}" for k, v in parts))
    print(f"  with --pdf: wall {pdf_wall:.2f} s (render {pdf_inner['render']:.2f} s; no target)")
    if median >= TARGET_S:
        print(f"MISSED: median {median:.2f} s >= {TARGET_S} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
