"""`tvdeploy apply` / `tvdeploy plan` on a fresh lab (issue 16): VMs to the running stack in one
command, a second apply that changes nothing, a plan that says so, and SIGKILL at three layers
each followed by a rerun that converges with no duplicate VMs, services or imports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_lab
from tests.integration.release_lab import ReleaseLab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def alab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("apply")
    lab_dir = Path(os.environ.get("TVDEPLOY_TEST_APPLY_LAB_DIR", "/tmp/tvdeploy-test-apply"))
    home = base / "home"
    lab = ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base / "root.json", {}, f"unix://{lab_dir}/engine/docker.sock")
    try:
        run_lab("up", "--dir", lab_dir, home=home)
        run_lab("images", "--small", "--dir", lab_dir, home=home, timeout=1500)
        for name in ("signer-1", "root-1"):
            lab.ok("keys", "generate", name, "--no-passphrase")
            lab.ok("keys", "export-public", name, "-o", base / f"{name}.pub")
        lab.ok("trust", "init", "-o", lab.trust, "--signer", base / "signer-1.pub", "--threshold", 1,
               "--root-key", "root-1", "--expires", "2099-12-31")
        for v in ("v1", "v2"):
            lab.bundles[v] = base / f"{v}.tar"
            lab.ok("bundle", "build", lab_dir / f"release-{v}.yaml", "--engine", lab.engine, "-o", lab.bundles[v],
                   "--key", "signer-1")
        yield lab
    finally:
        lab.tv("lab", "down", "--dir", lab_dir, timeout=300)


def apply_args(lab: ReleaseLab, version: str) -> list[object]:
    return ["apply", lab.site, "--bundle", lab.bundles[version], "--trust", lab.trust, "--trust-new-hosts", "--yes"]


def kill_at(lab: ReleaseLab, args: list[object], marker: str, delay: float) -> str:
    """Start `tvdeploy ARGS`, SIGKILL it *delay* seconds after stderr shows *marker*."""
    env = {**os.environ, "TVDEPLOY_HOME": str(lab.home), "NO_COLOR": "1", "TVDEPLOY_LOCK_TTL_SECONDS": "20"}
    proc = subprocess.Popen([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert marker in "".join(seen), "".join(seen)[-3000:]
    return "".join(seen)


def counts(lab: ReleaseLab) -> tuple[int, int, int]:
    """(VMs of the site, stack services, imported releases): duplicates would show here."""
    vms = lab.json("vm", "list", lab.site)
    from tvdeploy.facts.services import manager_client

    client = manager_client(lab.site_model())
    try:
        services = client.api.services(filters={"label": "com.docker.stack.namespace=trueverit"})
    finally:
        client.close()
    releases = lab.json("release", "list", lab.site)
    return len([r for r in vms if r.get("owned")]), len(services), len(releases)


def test_sigkill_in_the_vm_layer_then_apply_converges(alab: ReleaseLab) -> None:
    kill_at(alab, apply_args(alab, "v1"), "== vms", 1.0)
    out = alab.ok(*apply_args(alab, "v1"), timeout=1800)
    assert "release running: lab-v1" in out.stdout
    assert counts(alab) == (3, 18, 1)


def test_a_second_apply_changes_nothing_and_the_plan_agrees(alab: ReleaseLab) -> None:
    doc = json.loads(alab.ok(*apply_args(alab, "v1"), "--json").stdout.strip().splitlines()[-1])
    assert doc["event"] == "result" and doc["changed"] is False, doc
    assert [x["layer"] for x in doc["layers"]] == ["vms", "swarm", "images", "services", "policy"]
    plan = alab.tv("plan", alab.site, "--bundle", alab.bundles["v1"], "--trust", alab.trust, "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_sigkill_in_the_import_then_in_the_rollout_each_rerun_converges(alab: ReleaseLab) -> None:
    kill_at(alab, apply_args(alab, "v2"), "== images", 2.0)
    kill_at(alab, apply_args(alab, "v2"), "== services", 8.0)
    held = alab.json("release", "lock", alab.site)["held"]
    out = alab.ok(*apply_args(alab, "v2"), timeout=1800)
    if held:  # the killed run held the lease: the same operator on the same machine takes it over at once
        assert "took over an abandoned (its process on this machine is gone) deploy lock" in out.stderr
    assert "release running: lab-v2" in out.stdout
    assert counts(alab) == (3, 18, 2)
    status = alab.json("release", "status", alab.site)
    assert status["release"] == "lab-v2" and not any(s["drift"] for s in status["services"])
    assert alab.tv("plan", alab.site, "--release", "lab-v2", "--detailed-exitcode").returncode == 0
