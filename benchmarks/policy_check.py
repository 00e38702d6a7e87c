"""Benchmark: `policy check` of every target on the 3-node lab running 18 services.

Measures the wall time of gathering the facts (SSH probe per node, Docker API per node, swarm
and live service specs from a manager) and of evaluating every rule; the SSH round trips per
node (target: a constant, one probe per node, whatever the number of rules); the time per rule.
Runs the check with one pack and with two packs: the round trips per node must be the same for
every node and for both runs, else it exits 1.

Run as root on a lab machine:
    .venv/bin/python benchmarks/policy_check.py [--lab-dir DIR] [--home DIR] [--runs 3] [--keep]
The lab is brought up in --lab-dir (swarm bootstrapped, services created from the lab's small
image) and left up; `tvdeploy lab down --dir DIR` removes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SERVICES = 18


def _tv(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tvdeploy", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"tvdeploy {' '.join(args)}: {proc.stderr.strip()[-500:]}")


def _services(site: Any, docker_host: str) -> None:
    """18 services from the small lab image, loaded onto every node (no registry needed)."""
    from docker.types import Resources, RestartPolicy

    from tvdeploy.execute.swarm_session import Clients, open_clients
    from tvdeploy.lab import images as lab_images

    api = lab_images._client(docker_host)
    ref = lab_images.base_ref("small")
    if not lab_images._exists(api, ref):
        lab_images._build(api, ref, lab_images.base_context("small"))
    data = b"".join(api.get_image(ref))
    with open_clients(site, Clients()) as clients:
        for client in clients.values():
            for _ in client.api.load_image(data):
                pass
        manager = next(c for n, c in clients.items() if n == site.managers[0].name)
        have = {s.name for s in manager.services.list()}
        image = clients[site.managers[0].name].api.inspect_image(ref)["Id"]
        for i in range(SERVICES):
            name = f"bench-svc-{i:02d}"
            if name not in have:
                manager.services.create(image, command=["sleep", "86400"], name=name, user="65534:65534",
                                        read_only=True, cap_drop=["ALL"], networks=["tv-backend"],
                                        resources=Resources(mem_limit=16 * 1024 * 1024),
                                        restart_policy=RestartPolicy(condition="on-failure", max_attempts=5))


def _remove_services(site: Any) -> None:
    from tvdeploy.execute.swarm_session import Clients, open_clients

    with open_clients(site, Clients()) as clients:
        manager = clients[site.managers[0].name]
        for s in manager.services.list():
            if s.name.startswith("bench-svc-"):
                s.remove()


def _one_run(site: Any, site_path: Path, packs: list[str]) -> tuple[float, dict[str, int], Any, dict[str, float]]:
    from tvdeploy.execute.policy_observe import observe
    from tvdeploy.policy import engine
    from tvdeploy.policy import packs as packs_mod
    from tvdeploy.policy.model import TARGETS

    targets = tuple(t for t in TARGETS if t not in ("image", "bundle"))
    start = time.perf_counter()
    facts, stats = observe(site, site_path, targets)
    gathered = time.perf_counter()
    result = engine.run(packs_mod.select(packs, site_path.parent), facts, targets, [], site.policies.fail_on)
    end = time.perf_counter()
    phases = {**stats.seconds, "gather": gathered - start, "evaluate": end - gathered}
    return end - start, dict(stats.ssh_round_trips), result, phases


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab-dir", default="/tmp/tvdeploy-bench-policy")
    ap.add_argument("--home", default=None, help="TVDEPLOY_HOME of the lab (default: <lab-dir>-home)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the bench services")
    args = ap.parse_args()
    os.environ["TVDEPLOY_HOME"] = args.home or f"{args.lab_dir}-home"
    lab = Path(args.lab_dir)
    _tv("lab", "up", "--dir", str(lab))
    from tvdeploy.config.load import load_site

    site_path = lab / "site.yaml"
    site = load_site(site_path)
    _tv("swarm", "bootstrap", str(site_path), "--yes")
    _services(site, f"unix://{lab / 'engine' / 'docker.sock'}")
    try:
        walls, trips_seen = [], []
        result = None
        for run in range(args.runs):
            packs = ["cis-docker"] if run % 2 else ["cis-docker", "trueverit"]
            wall, trips, result, phases = _one_run(site, site_path, packs)
            walls.append(wall)
            trips_seen.append(trips)
            print(f"run {run + 1} ({'+'.join(packs)}, {len(result.rules)} rules, {len(result.findings)} findings): "
                  f"{wall:.2f} s; " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
                  + f"; SSH round trips per node: {trips}")
        assert result is not None
        print(f"wall time: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s over {len(walls)} runs "
              f"({len(site.nodes)} nodes, {SERVICES} bench services)")
        slow = sorted(result.timings.items(), key=lambda kv: -kv[1])
        total = sum(result.timings.values())
        print(f"rules: {len(result.timings)} evaluated in {total * 1000:.1f} ms, mean "
              f"{total / max(1, len(result.timings)) * 1e6:.0f} us per rule; slowest: "
              + ", ".join(f"{rid} {sec * 1000:.2f} ms" for rid, sec in slow[:5]))
        counts = {c for trips in trips_seen for c in trips.values()}
        nodes_seen = all(set(trips) == {n.name for n in site.nodes} for trips in trips_seen)
        if len(counts) != 1 or not nodes_seen:
            print(f"FAIL: SSH round trips per node are not constant: {trips_seen}")
            return 1
        print(f"SSH round trips per node: {counts.pop()} on every node, in every run (constant)")
        return 0
    finally:
        if not args.keep:
            _remove_services(site)


if __name__ == "__main__":
    raise SystemExit(main())
