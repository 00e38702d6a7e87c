"""Faults mid-rollout on the real lab (issue 13): the dockerd of the manager tvdeploy talks to
stopped, and a node cut off, each followed by a rerun that converges and an audit log that
verifies. Heavy (a lab of its own, two full rollouts per fault): marked ``manual``, run by hand
(`.venv/bin/python -m pytest -m manual tests/integration/test_release_faults_lab.py`), not yet in CI.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration import test_release_ops_lab as ops
from tests.integration.release_lab import ReleaseLab
from tests.integration.test_release_ops_lab import audit_verifies, digests_of, expected, start, wait_until_locked

rlab = ops.rlab  # the same lab fixture (a lab of this module's own)

pytestmark = [pytest.mark.lab, pytest.mark.manual]


def deploy_with_a_fault(lab: ReleaseLab, release: str, fault: list[object], delay: float) -> subprocess.CompletedProcess[str]:
    """`release deploy RELEASE`, with `tvdeploy lab node FAULT...` done *delay* s after it took the lock."""
    proc = start(lab, "release", "deploy", lab.site, release, "--yes")
    wait_until_locked(lab, proc)
    time.sleep(delay)
    lab.ok("lab", "node", *fault, "--dir", lab.dir)
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_managers_dockerd_killed_mid_rollout_then_a_rerun_converges(rlab: ReleaseLab, tmp_path: Path) -> None:
    """(a) The manager tvdeploy talks to (the first one) loses its dockerd mid-rollout. The stateful
    services live on that node, so the site converges once it is back: start, unlock, rerun."""
    site = rlab.site_model()
    first = site.managers[0].name
    faulted = deploy_with_a_fault(rlab, "lab-v2", ["stop", first], 6.0)
    assert "Traceback" not in faulted.stderr
    rlab.ok("lab", "node", "start", first, "--dir", rlab.dir)
    rlab.ok("swarm", "unlock", rlab.site)  # autolock: a restarted manager comes back locked
    rlab.ok("release", "deploy", rlab.site, "lab-v2", "--yes")
    assert digests_of(rlab) == expected(rlab, "v2")
    assert rlab.tv("release", "plan", rlab.site, "lab-v2", "--detailed-exitcode").returncode == 0
    audit_verifies(rlab, tmp_path)


def test_a_node_cut_off_mid_rollout_its_tasks_move_and_a_rerun_converges(rlab: ReleaseLab, tmp_path: Path) -> None:
    """(b) A core node without stateful services is cut off mid-rollout: its tasks move to the
    other core node, and the rollout (or its rerun) converges without it."""
    site = rlab.site_model()
    second = site.managers[1].name
    faulted = deploy_with_a_fault(rlab, "lab-v1", ["isolate", second], 4.0)
    assert "Traceback" not in faulted.stderr
    try:
        def healthy_without_it() -> bool:
            nodes = {n["name"]: n for n in rlab.json("swarm", "status", rlab.site).get("nodes", [])}
            if nodes.get(second, {}).get("state") not in ("down", "unknown", None):
                return False
            rlab.ok("release", "deploy", rlab.site, "lab-v1", "--yes")  # the rerun finishes what remains
            status = rlab.json("release", "status", rlab.site)
            return all(s["health"] == "healthy" for s in status["services"]) and \
                digests_of(rlab) == expected(rlab, "v1")

        deadline = time.monotonic() + 300
        while not healthy_without_it():
            assert time.monotonic() < deadline, rlab.json("release", "status", rlab.site)
            time.sleep(5)
    finally:
        rlab.ok("lab", "node", "rejoin", second, "--dir", rlab.dir)
    audit_verifies(rlab, tmp_path)
