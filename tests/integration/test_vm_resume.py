"""SIGKILL `vm apply` mid-way (a real subprocess) at several stages; a rerun finishes the job
with no duplicate VM. The simulator runs with 100 ms per request so the stages take time."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.vcsim_site import SimSite, folder_vms, pyvmomi_session, sim_site

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture
def slow_sim(tmp_path: Path, operator_key: str):
    yield from sim_site(tmp_path, nodes=3, latency_ms=100)


def _apply_until(site: Path, stage: str, nth: int = 1, timeout_s: float = 60.0) -> list[dict]:
    """Run apply in a subprocess and SIGKILL it when the *nth* VM reaches *stage*."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvdeploy", "vm", "apply", str(site), "--yes", "--json", "--parallel", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    seen: list[dict] = []
    buf = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                event = json.loads(line)
                seen.append(event)
                hits = [e for e in seen if e.get("event") == "vm.stage" and e.get("stage") == stage]
                if len(hits) >= nth:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    return seen
        pytest.fail(f"apply never reached stage {stage!r}: {seen[-3:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
    return seen


@pytest.mark.parametrize(
    ("stage", "nth"),
    [("clone", 1), ("reconfigure", 2), ("customization", 1), ("guest IP", 2), ("record identity", 1)],
)
def test_killed_apply_is_finished_by_a_rerun_without_duplicates(
    cli, slow_sim: SimSite, stage: str, nth: int
) -> None:
    _apply_until(slow_sim.path, stage, nth)
    # Killed mid-way: the site is not converged, and past the first clone a VM is half made.
    assert cli("vm", "plan", slow_sim.path, "--detailed-exitcode").code == 2
    if stage != "clone":
        assert folder_vms(pyvmomi_session(slow_sim.info), slow_sim.info)
    r = cli("vm", "apply", slow_sim.path, "--yes")
    assert r.code == 0, r.stderr
    vms = folder_vms(pyvmomi_session(slow_sim.info), slow_sim.info)  # raises on a duplicate name
    assert sorted(vms) == ["tv-node-1", "tv-node-2", "tv-node-3"]
    rows = json.loads(cli("vm", "list", slow_sim.path, "--json").stdout)
    for row, node in zip(rows, slow_sim.doc["nodes"], strict=True):
        assert row == {"name": node["name"], "ip": node["address"], "power": "poweredOn", "cpus": node["cpus"],
                       "memory_mb": node["memory_mb"], "owned": True}
    assert cli("vm", "plan", slow_sim.path, "--detailed-exitcode").code == 0
