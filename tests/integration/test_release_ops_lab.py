"""Hot-fix, rollback and the deploy lock on the real lab (issue 13): a hot-fix from a delta bundle
changes only its service, a broken hot-fix undoes itself, two operators cannot deploy at once,
rollback returns to the previous release and is refused before any change when an image it needs
is gone, and Ctrl-C / SIGKILL mid-deploy leave a site the next run converges (audit log intact);
faults mid-rollout (the dockerd of the manager tvdeploy talks to stopped, a node cut off), each
followed by a rerun that converges and an audit log that verifies.

One lab of this module's own; v1 then v2 deployed by the fixture; the scenarios run in file order.
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

from tests.integration.lab_helpers import ssh
from tests.integration.release_lab import ReleaseLab, build, manifest_digests

pytestmark = pytest.mark.lab

HOTFIX_RELEASE = "lab-hotfix-cloud"


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("relops")
    lab_dir = Path(os.environ.get("TVDEPLOY_TEST_RELOPS_LAB_DIR", "/tmp/tvdeploy-test-relops"))
    home = base / "home"
    try:
        lab = build(base, lab_dir, home)
        lab.ok("release", "deploy", lab.site, "lab-v1", "--yes")
        lab.ok("release", "deploy", lab.site, "lab-v2", "--yes")
        yield lab
    finally:
        ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base, {}, "").tv("lab", "down", "--dir", lab_dir,
                                                                         timeout=300)


def tasks(lab: ReleaseLab) -> dict[str, tuple[set[str], set[str]]]:
    """service -> (running task ids, running digests)."""
    from tvdeploy.facts.services import manager_client

    client = manager_client(lab.site_model())
    try:
        out: dict[str, tuple[set[str], set[str]]] = {}
        for t in client.api.tasks(filters={"label": "com.docker.stack.namespace=trueverit",
                                           "desired-state": "running"}):
            if (t.get("Status") or {}).get("State") != "running":
                continue
            svc = client.api.inspect_service(t["ServiceID"])["Spec"]["Labels"]["io.tvdeploy.service"]
            ids, digests = out.setdefault(svc, (set(), set()))
            ids.add(t["ID"])
            digests.add(t["Spec"]["ContainerSpec"]["Image"].rsplit("@", 1)[1])
        return out
    finally:
        client.close()


def digests_of(lab: ReleaseLab) -> dict[str, set[str]]:
    return {k: v[1] for k, v in tasks(lab).items()}


def expected(lab: ReleaseLab, version: str) -> dict[str, set[str]]:
    return {s: {d} for s, d in manifest_digests(lab.bundles[version]).items() if s != "registry"}


def audit_verifies(lab: ReleaseLab, tmp: Path) -> None:
    pub = tmp / "operator.pub"
    lab.ok("keys", "export-public", "operator", "-o", pub, "--force")
    lab.ok("audit", "verify", lab.dir / "state" / "audit" / "audit.log", "--key", pub)


def lock(lab: ReleaseLab) -> dict[str, Any]:
    return dict(lab.json("release", "lock", lab.site))


def start(lab: ReleaseLab, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    e = {**os.environ, "TVDEPLOY_HOME": str(lab.home), "NO_COLOR": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "tvdeploy", *map(str, args)], env=e, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def wait_until_locked(lab: ReleaseLab, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not lock(lab)["held"]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the deploy never took the lock"
        time.sleep(0.3)


def test_hotfix_from_a_delta_bundle_changes_only_that_service(rlab: ReleaseLab, tmp_path: Path) -> None:
    import yaml

    from tvdeploy.lab import images

    api = images._client(rlab.engine)
    images._build(api, "trueverit/cloud:3", images.app_context("cloud", "3", "small"))
    spec = tmp_path / "hotfix.yaml"
    spec.write_text(yaml.safe_dump({"release": HOTFIX_RELEASE, "sequence": 4, "images": {"cloud": "trueverit/cloud:3"}}))
    have, delta = tmp_path / "have.json", tmp_path / "hotfix.tar"
    rlab.ok("bundle", "inventory", rlab.site, "-o", have)
    rlab.ok("bundle", "build", spec, "--engine", rlab.engine, "--since", have, "-o", delta,
            "--key", "signer-1", "--key", "signer-2")
    rlab.ok("bundle", "import", rlab.site, delta, "--trust", rlab.trust, "--yes")
    before = tasks(rlab)
    out = rlab.ok("release", "hotfix", rlab.site, "cloud", "--release", HOTFIX_RELEASE, "--yes")
    assert "cloud changed" in out.stdout
    after = tasks(rlab)
    new_digest = manifest_digests(delta)["cloud"]
    assert after["cloud"][1] == {new_digest} and after["cloud"][0].isdisjoint(before["cloud"][0])
    for name in before:
        if name != "cloud":
            assert after[name][0] == before[name][0], f"{name}: its tasks changed"
    history = rlab.json("release", "history", rlab.site)
    assert history[0]["kind"] == "hotfix" and history[0]["release"] == "lab-v2"
    assert history[0]["hotfix_service"] == "cloud" and history[0]["outcome"] == "success"
    status = {s["name"]: s for s in rlab.json("release", "status", rlab.site)["services"]}
    assert status["cloud"]["digest"] == new_digest and not any(s["drift"] for s in status.values())
    plan = rlab.json("release", "plan", rlab.site, "lab-v2")
    changing = {s["service"]: s for s in plan["services"] if s["action"] != "noop"}
    assert list(changing) == ["cloud"] and changing["cloud"]["old_digest"] == new_digest


def test_a_broken_hotfix_rolls_back_by_itself(rlab: ReleaseLab) -> None:
    before = digests_of(rlab)
    proc = rlab.tv("release", "hotfix", rlab.site, "business_analytics", "--release", "lab-v2-broken", "--yes")
    assert proc.returncode == 1 and "business_analytics" in proc.stderr and "Traceback" not in proc.stderr
    assert digests_of(rlab) == before
    h = rlab.json("release", "history", rlab.site)[0]
    assert (h["kind"], h["outcome"], h["hotfix_service"]) == ("hotfix", "rolled-back", "business_analytics")


def second_operator_machine(lab: ReleaseLab, tmp: Path) -> tuple[Path, Path]:
    """(site file, home) of another operator machine: its own operator key, its own state folder
    (the site's certificates and known hosts copied, as set up for it) and so its own audit log."""
    import shutil

    import yaml

    state = tmp / "other-state"
    shutil.copytree(lab.dir / "state", state, ignore=shutil.ignore_patterns("audit"))
    doc = yaml.safe_load(lab.site.read_text())
    doc["state_dir"] = str(state)
    site = tmp / "other-site.yaml"
    site.write_text(yaml.safe_dump(doc, sort_keys=False))
    home = tmp / "other-home"
    lab.ok("keys", "generate", "operator", "--no-passphrase", home=home)
    return site, home


def test_two_operators_at_once_exactly_one_deploys(rlab: ReleaseLab, tmp_path: Path) -> None:
    other_site, other = second_operator_machine(rlab, tmp_path)
    a = start(rlab, "release", "deploy", rlab.site, "lab-v2", "--yes")
    b = start(rlab, "release", "deploy", other_site, "lab-v2", "--yes", env={"TVDEPLOY_HOME": str(other)})
    results = [(p.wait(timeout=600), *p.communicate()) for p in (a, b)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "the deploy lock is held by key" in loser[2] and "release deploy lab-v2" in loser[2]
    assert digests_of(rlab) == expected(rlab, "v2")
    assert lock(rlab)["held"] is False


def test_rollback_returns_to_the_previous_release(rlab: ReleaseLab, tmp_path: Path) -> None:
    plan = rlab.tv("release", "rollback", rlab.site, "--plan", "--detailed-exitcode", "--json")
    assert plan.returncode == 2 and json.loads(plan.stdout)["release"] == "lab-v1"
    rlab.ok("release", "rollback", rlab.site, "--yes")
    assert digests_of(rlab) == expected(rlab, "v1")
    h = rlab.json("release", "history", rlab.site)[0]
    assert (h["kind"], h["release"], h["outcome"]) == ("rollback", "lab-v1", "success")
    audit_verifies(rlab, tmp_path)


def _registry_link(lab: ReleaseLab, repo: str, digest: str) -> str:
    return (f"/var/lib/docker/volumes/tv-registry-data/_data/docker/registry/v2/repositories/{repo}/"
            f"_manifests/revisions/sha256/{digest.removeprefix('sha256:')}")


def test_rollback_refused_before_any_change_when_an_image_is_gone(rlab: ReleaseLab) -> None:
    site = rlab.site_model()
    gone = manifest_digests(rlab.bundles["v2"])["cloud"]
    link = _registry_link(rlab, "trueverit/cloud", gone)
    moved = []
    for node in site.managers:
        r = ssh(rlab.dir, str(node.address), f"test -d {link} && mv {link} {link}.away && echo moved")
        if "moved" in r.stdout:
            moved.append(str(node.address))
    assert moved, "no registry held v2's cloud manifest"
    try:
        before = digests_of(rlab)
        proc = rlab.tv("release", "rollback", rlab.site, "--to", "lab-v2", "--yes")
        assert proc.returncode == 1
        assert "not in the site registry" in proc.stderr and "cloud" in proc.stderr
        assert digests_of(rlab) == before
    finally:
        for address in moved:
            ssh(rlab.dir, address, f"mv {link}.away {link}")


def test_ctrl_c_mid_deploy_frees_the_lock_at_once_and_a_rerun_converges(rlab: ReleaseLab, tmp_path: Path) -> None:
    proc = start(rlab, "release", "deploy", rlab.site, "lab-v2", "--yes")
    wait_until_locked(rlab, proc)
    time.sleep(3)  # let it change something
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    _out, err = proc.communicate()
    assert code != 0 and "Traceback" not in err, err
    assert lock(rlab)["held"] is False
    rlab.ok("release", "deploy", rlab.site, "lab-v2", "--yes")
    assert digests_of(rlab) == expected(rlab, "v2")
    audit_verifies(rlab, tmp_path)


def test_sigkill_mid_deploy_the_lease_expires_and_the_next_deploy_takes_over(rlab: ReleaseLab,
                                                                             tmp_path: Path) -> None:
    ttl = {"TVDEPLOY_LOCK_TTL_SECONDS": "30"}
    proc = start(rlab, "release", "deploy", rlab.site, "lab-v1", "--yes", env=ttl)
    wait_until_locked(rlab, proc)
    time.sleep(3)
    proc.kill()
    proc.wait(timeout=30)
    held = lock(rlab)
    assert held["held"] is True and held["command"] == "release deploy lab-v1"
    # Another operator (another key) must wait for the lease to expire ...
    other_site, other = second_operator_machine(rlab, tmp_path)
    refused = rlab.tv("release", "deploy", other_site, "lab-v1", "--yes", home=other)
    assert refused.returncode == 1 and "deploy lock is held" in refused.stderr
    deadline = time.monotonic() + 60
    while lock(rlab)["held"]:
        assert time.monotonic() < deadline
        time.sleep(1)
    # ... and then the next deploy takes the expired lease over (from the first operator's home, so
    # the audit log stays one operator's chain for the check below)
    env = {**os.environ, **ttl, "TVDEPLOY_HOME": str(rlab.home), "NO_COLOR": "1"}
    again = subprocess.run([sys.executable, "-m", "tvdeploy", "release", "deploy", str(rlab.site), "lab-v1", "--yes"],
                           env=env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr
    assert "took over an expired deploy lock" in again.stderr
    assert digests_of(rlab) == expected(rlab, "v1")
    pub = tmp_path / "operator.pub"
    rlab.ok("keys", "export-public", "operator", "-o", pub, "--force")
    log = rlab.dir / "state" / "audit" / "audit.log"
    if rlab.tv("audit", "verify", log, "--key", pub).returncode != 0:  # a record torn by the SIGKILL
        rlab.ok("audit", "repair", log, "--yes")
    rlab.ok("audit", "verify", log, "--key", pub)



def other_release(lab: ReleaseLab) -> tuple[str, str]:
    """(release, version) of the lab release that is NOT running: deploying it rolls services."""
    running = lab.json("release", "status", lab.site)["release"]
    return ("lab-v1", "v1") if running == "lab-v2" else ("lab-v2", "v2")


def deploy_with_a_fault(lab: ReleaseLab, release: str, fault: list[object], delay: float) -> subprocess.CompletedProcess[str]:
    """`release deploy RELEASE`, with `tvdeploy lab node FAULT...` done *delay* s after it took the lock."""
    proc = start(lab, "release", "deploy", lab.site, release, "--yes")
    wait_until_locked(lab, proc)
    time.sleep(delay)
    lab.ok("lab", "node", *fault, "--dir", lab.dir)
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_managers_dockerd_stopped_mid_rollout_then_a_rerun_converges(rlab: ReleaseLab, tmp_path: Path) -> None:
    """(a) The manager tvdeploy talks to (the first one) loses its dockerd mid-rollout: the deploy
    fails with a message, not a traceback. The stateful services live on that node, so the site
    converges once it is back: start, unlock (autolock), rerun."""
    first = rlab.site_model().managers[0].name
    release, version = other_release(rlab)
    faulted = deploy_with_a_fault(rlab, release, ["stop", first], 6.0)
    assert "Traceback" not in faulted.stderr, faulted.stderr
    rlab.ok("lab", "node", "start", first, "--dir", rlab.dir)
    rlab.ok("swarm", "unlock", rlab.site)  # autolock: a restarted manager comes back locked
    rlab.ok("release", "deploy", rlab.site, release, "--yes")
    assert digests_of(rlab) == expected(rlab, version)
    assert rlab.tv("release", "plan", rlab.site, release, "--detailed-exitcode").returncode == 0
    audit_verifies(rlab, tmp_path)


def test_a_node_cut_off_mid_rollout_its_tasks_move_and_a_rerun_converges(rlab: ReleaseLab, tmp_path: Path) -> None:
    """(b) A core node without stateful services is cut off mid-rollout: its tasks move to the
    other core node, and the rollout (or its rerun) converges without it."""
    second = rlab.site_model().managers[1].name
    release, version = other_release(rlab)
    faulted = deploy_with_a_fault(rlab, release, ["isolate", second], 4.0)
    assert "Traceback" not in faulted.stderr, faulted.stderr
    try:
        def healthy_without_it() -> bool:
            nodes = {n["name"]: n for n in rlab.json("swarm", "status", rlab.site).get("nodes", [])}
            if nodes.get(second, {}).get("state") not in ("down", "unknown", None):
                return False
            rlab.ok("release", "deploy", rlab.site, release, "--yes")  # the rerun finishes what remains
            status = rlab.json("release", "status", rlab.site)
            return all(s["health"] == "healthy" for s in status["services"]) and \
                digests_of(rlab) == expected(rlab, version)

        deadline = time.monotonic() + 300
        while not healthy_without_it():
            assert time.monotonic() < deadline, rlab.json("release", "status", rlab.site)
            time.sleep(5)
    finally:
        rlab.ok("lab", "node", "rejoin", second, "--dir", rlab.dir)
    audit_verifies(rlab, tmp_path)
