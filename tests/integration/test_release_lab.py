"""`release deploy` on the real lab (issue 12): v1 from nothing, v2 on top, a broken release
rolled back as a whole, data that survives, drift shown and restored, and the history read from
the swarm by a second operator machine.

The scenarios run in file order on one lab of this module's own (deploying 18 services costs a
minute), each leaving the site as the next expects.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.airgap import air_gap_for
from tests.integration.lab_helpers import ssh
from tests.integration.release_lab import ReleaseLab, build, manifest_digests

pytestmark = pytest.mark.lab
air_gap = air_gap_for("rlab")  # issue 16: every rollout test under the air-gap sink, 0 packets out

MARKER = "/var/lib/docker/volumes/trueverit_postgres_db_data/_data/tvdeploy-test-marker"


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("release")
    lab_dir = Path(os.environ.get("TVDEPLOY_TEST_RELEASE_LAB_DIR", "/tmp/tvdeploy-test-release"))
    home = base / "home"
    lab = None
    try:
        lab = build(base, lab_dir, home)
        yield lab
    finally:
        if lab is not None or lab_dir.exists():
            ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base, {}, "").tv("lab", "down", "--dir", lab_dir,
                                                                             timeout=300)


def running_digests(lab: ReleaseLab) -> dict[str, set[str]]:
    from tvdeploy.facts.services import manager_client

    client = manager_client(lab.site_model())
    try:
        out: dict[str, set[str]] = {}
        for t in client.api.tasks(filters={"label": "com.docker.stack.namespace=trueverit",
                                           "desired-state": "running"}):
            if (t.get("Status") or {}).get("State") != "running":
                continue
            svc = client.api.inspect_service(t["ServiceID"])["Spec"]["Labels"]["io.tvdeploy.service"]
            out.setdefault(svc, set()).add(t["Spec"]["ContainerSpec"]["Image"].rsplit("@", 1)[1])
        return out
    finally:
        client.close()


def expected(lab: ReleaseLab, version: str) -> dict[str, set[str]]:
    return {svc: {d} for svc, d in manifest_digests(lab.bundles[version]).items() if svc != "registry"}


def data_node_address(lab: ReleaseLab) -> str:
    site = lab.site_model()
    return str(site.nodes[0].address)  # postgres_db is pinned to the first node of zone core


def test_list_shows_the_imported_releases(rlab: ReleaseLab) -> None:
    rows = rlab.json("release", "list", rlab.site)
    assert [(r["release"], r["sequence"], r["deployed"]) for r in rows] == [
        ("lab-v2-broken", 3, False), ("lab-v2", 2, False), ("lab-v1", 1, False)]


def test_v1_from_nothing_every_task_runs_the_manifest_digest(rlab: ReleaseLab) -> None:
    plan = rlab.tv("release", "plan", rlab.site, "lab-v1", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stderr
    assert "18 to change" in plan.stdout
    rlab.ok("release", "deploy", rlab.site, "lab-v1", "--yes")
    assert running_digests(rlab) == expected(rlab, "v1")
    again = rlab.tv("release", "plan", rlab.site, "lab-v1", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    status = rlab.json("release", "status", rlab.site)
    assert status["release"] == "lab-v1"
    for s in status["services"]:
        assert s["running_digests"] == [s["digest"]] and s["health"] == "healthy" and not s["drift"], s
    assert [r["deployed"] for r in rlab.json("release", "list", rlab.site)] == [False, False, True]
    # the data path answers from inside edge (the gate checked it; check it again independently)
    marker = ssh(rlab.dir, data_node_address(rlab), f"echo kept > {MARKER} && cat {MARKER}")
    assert marker.stdout.strip() == "kept", marker.stderr


def test_v2_on_top_rolls_the_changed_services(rlab: ReleaseLab) -> None:
    plan = rlab.json("release", "plan", rlab.site, "lab-v2")
    changed = {s["service"] for s in plan["services"] if s["action"] == "update"}
    assert changed == set(expected(rlab, "v2"))  # the app layer of every service differs in v2
    assert all("image" in s["changes"] for s in plan["services"])
    rlab.ok("release", "deploy", rlab.site, "lab-v2", "--yes")
    assert running_digests(rlab) == expected(rlab, "v2")
    assert rlab.tv("release", "plan", rlab.site, "lab-v2", "--detailed-exitcode").returncode == 0


def test_broken_release_is_rolled_back_as_a_whole(rlab: ReleaseLab) -> None:
    proc = rlab.tv("release", "deploy", rlab.site, "lab-v2-broken", "--yes")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    error = [line for line in lines if line.startswith("error: ")]
    # names the service and why: its health check failed (the check's output when the container is
    # still there to ask, else swarm's "unhealthy container")
    assert len(error) == 1 and "business_analytics" in error[0], proc.stderr
    assert "health check" in error[0] or "unhealthy" in error[0], error[0]
    assert "Traceback" not in proc.stderr
    assert running_digests(rlab) == expected(rlab, "v2")
    history = rlab.json("release", "history", rlab.site)
    assert history[0]["release"] == "lab-v2-broken" and history[0]["outcome"] == "rolled-back"
    assert history[0]["kind"] == "deploy" and history[0]["operator"]
    assert history[1]["release"] == "lab-v2" and history[1]["outcome"] == "success"
    assert rlab.json("release", "status", rlab.site)["release"] == "lab-v2"


def test_data_survives_updates_and_the_rollback(rlab: ReleaseLab) -> None:
    marker = ssh(rlab.dir, data_node_address(rlab), f"cat {MARKER}")
    assert marker.stdout.strip() == "kept", marker.stderr


def test_a_change_by_hand_is_drift_and_the_next_deploy_restores_it(rlab: ReleaseLab) -> None:
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.release.registry_address import endpoint

    site = rlab.site_model()
    v1_cloud = manifest_digests(rlab.bundles["v1"])["cloud"]
    certs = pki_paths(site).client_dir
    env = {**os.environ, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs),
           "DOCKER_HOST": f"tcp://{site.managers[0].address}:2376"}
    import subprocess

    image = f"{endpoint(site).host}/trueverit/cloud@{v1_cloud}"
    by_hand = subprocess.run(["docker", "service", "update", "--detach", "--no-resolve-image", "--image", image,
                              "trueverit_cloud"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert by_hand.returncode == 0, by_hand.stderr
    status = {s["name"]: s for s in rlab.json("release", "status", rlab.site)["services"]}
    assert status["cloud"]["drift"] is True and status["cloud"]["live_digest"] == v1_cloud
    assert not any(s["drift"] for name, s in status.items() if name != "cloud")
    plan = rlab.tv("release", "plan", rlab.site, "lab-v2", "--detailed-exitcode", "--json")
    assert plan.returncode == 2
    steps = {s["service"]: s for s in json.loads(plan.stdout)["services"]}
    assert steps["cloud"]["action"] == "update" and steps["cloud"]["drift"]
    assert {s["action"] for name, s in steps.items() if name != "cloud"} == {"noop"}
    rlab.ok("release", "deploy", rlab.site, "lab-v2", "--yes")
    assert running_digests(rlab) == expected(rlab, "v2")
    assert not any(s["drift"] for s in rlab.json("release", "status", rlab.site)["services"])


def test_a_second_operator_machine_reads_the_same_history(rlab: ReleaseLab, tmp_path: Path) -> None:
    import yaml

    from tvdeploy.pki.ca import pki_paths

    site = rlab.site_model()
    other_state = tmp_path / "state"
    shutil.copytree(pki_paths(site).client_dir, other_state / "pki" / "client")
    doc = yaml.safe_load(rlab.site.read_text())
    doc["state_dir"] = str(other_state)
    other_site = tmp_path / "site.yaml"
    other_site.write_text(yaml.safe_dump(doc))
    other_home = tmp_path / "home"
    mine = rlab.json("release", "history", rlab.site)
    theirs = rlab.json("release", "history", other_site, home=other_home)
    assert theirs == mine and len(theirs) >= 4
    assert not (other_state / "releases").exists()


def test_policy_check_of_the_deployed_site_passes_at_high(rlab: ReleaseLab) -> None:
    proc = rlab.tv("policy", "check", rlab.site, "--format", "json")
    doc = json.loads(proc.stdout)
    blocking = [f for f in doc["findings"] if f["status"] == "fail" and f["severity"] in ("critical", "high")]
    assert proc.returncode == 0, blocking
    assert any(f["status"] == "waived" for f in doc["findings"])  # the lab's signed waivers


def test_the_gate_refuses_a_bad_stack_naming_each_rule_and_nothing_changes(rlab: ReleaseLab, tmp_path: Path) -> None:
    import yaml

    from tvdeploy.resources import templates_dir

    text = (templates_dir() / "trueverit" / "stack.yml.j2").read_text()
    bad = (text
           .replace('    image: {{ s.image|tojson }}\n',
                    '    image: {{ (s.image.split("@")[0] ~ ":latest")|tojson }}\n'
                    '    environment: {DB_PASSWORD: "not-a-real-password-1"}\n'
                    '    cap_add: ["SYS_ADMIN"]\n')
           .replace('    networks:\n{%- for net in s.networks %}', '    networks:\n      host: {}\n{%- for net in s.networks %}')
           .replace('memory: {{ v.resources.memory|tojson }}, ', '')
           .replace('networks:\n{%- for key, name in networks|dictsort %}',
                    'networks:\n  host: {external: true, name: host}\n{%- for key, name in networks|dictsort %}'))
    own = tmp_path / "template"
    own.mkdir()
    (own / "stack.yml.j2").write_text(bad)
    doc = yaml.safe_load(rlab.site.read_text())
    doc["stack"]["template"] = str(own / "stack.yml.j2")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    before = running_digests(rlab)
    proc = rlab.tv("release", "deploy", site, "lab-v2", "--yes")
    assert proc.returncode == 1, proc.stdout
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "policy gate" in error[0], proc.stderr
    for needle in ("secret", "digest", "host", "capabilit", "memory"):  # one rule each, by its title
        assert needle in error[0].lower(), (needle, error[0])
    assert "not-a-real-password-1" not in proc.stderr + proc.stdout
    assert running_digests(rlab) == before
