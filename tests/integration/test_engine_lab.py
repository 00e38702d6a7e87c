"""`engine install` on `lab up --bare` nodes (issue 19): Docker Engine from a signed bundle, offline.

One flow, in order, on the session's bare lab: an altered package is refused before anything is
copied; an install whose SSH connection to one node is cut while dpkg runs fails for that node
and the rerun finishes it; a third run changes nothing and `engine plan --detailed-exitcode`
exits 0; the lab's sink counts no packet bound outside the lab during all that; then `swarm bootstrap`, `swarm status` (engine
version per node) and a bundle import work on the freshly installed engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.airgap import AirGap
from tests.integration.bare_lab import bare_home, bare_lab  # noqa: F401 - fixtures
from tests.integration.conftest import LabInfo, run_lab
from tests.integration.lab_helpers import ssh

pytestmark = pytest.mark.lab


def _tv(home: Path, *args: object, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@dataclass
class EngineLab:
    lab: LabInfo
    home: Path
    bundle: Path
    trust: Path


@pytest.fixture(scope="module")
def engine_lab(bare_lab: LabInfo, bare_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLab]:  # noqa: F811
    base = tmp_path_factory.mktemp("engine")
    run_lab("images", "--small", "--version", "1", "--dir", bare_lab.dir, home=bare_home, timeout=1500)
    for name in ("signer-1", "root-1"):
        _ok(_tv(bare_home, "keys", "generate", name, "--no-passphrase"))
    _ok(_tv(bare_home, "keys", "export-public", "signer-1", "-o", base / "signer-1.pub"))
    trust = base / "root.json"
    _ok(_tv(bare_home, "trust", "init", "-o", trust, "--signer", base / "signer-1.pub", "--threshold", 1,
            "--root-key", "root-1", "--expires", "2099-12-31"))
    bundle = base / "release-v1.tar"
    _ok(_tv(bare_home, "bundle", "build", bare_lab.dir / "release-v1.yaml", "--engine",
            f"unix://{bare_lab.dir / 'engine' / 'docker.sock'}", "-o", bundle, "--engine-packages", "debian-12",
            "--key", "signer-1"))
    yield EngineLab(bare_lab, bare_home, bundle, trust)


def _nodes(e: EngineLab) -> list[dict[str, str]]:
    return e.lab.status["nodes"]


def _install(e: EngineLab, bundle: Path | None = None) -> subprocess.CompletedProcess[str]:
    return _tv(e.home, "engine", "install", e.lab.site_file, "--bundle", bundle or e.bundle, "--trust", e.trust,
               "--yes", "--json")


def _plan_layers(e: EngineLab) -> dict[str, dict[str, object]]:
    """`tvdeploy plan` of the bare lab's site without its vcenter section (no VMs to plan: the
    nodes are given), with the engine bundle."""
    doc = yaml.safe_load(e.lab.site_file.read_text())
    doc.pop("vcenter", None)
    given = e.lab.site_file.with_name("site-nodes-given.yaml")  # beside it: same state, same known hosts
    given.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = _tv(e.home, "plan", given, "--bundle", e.bundle, "--trust", e.trust, "--json")
    assert r.returncode == 0, r.stderr
    return {x["layer"]: x for x in json.loads(r.stdout)["layers"]}


def test_plan_shows_the_engine_layer_before_the_install(engine_lab: EngineLab) -> None:
    layers = _plan_layers(engine_lab)
    assert list(layers)[:3] == ["vms", "engine", "swarm"], layers
    assert layers["engine"]["changes"] is True and len(layers["engine"]["steps"]) == len(_nodes(engine_lab))
    assert layers["swarm"]["summary"] == "TLS and swarm formation follow the engine install", layers["swarm"]


def test_an_altered_package_is_refused_before_anything_is_copied(engine_lab: EngineLab) -> None:
    from tvdeploy.bundle.reader import read_bundle

    e = engine_lab
    found = read_bundle(e.bundle)
    pkg = next(p for p in found.engine_packages.packages if p.name == "runc")  # type: ignore[union-attr]
    altered = e.bundle.with_name("altered.tar")
    data = bytearray(e.bundle.read_bytes())
    data[found.data_offsets[f"blobs/sha256/{pkg.digest}"] + 4096] ^= 1
    altered.write_bytes(data)
    r = _install(e, altered)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {altered}: blobs/sha256/{pkg.digest}: content does not match its digest "
                      f"(it hashes to sha256:{errors[0].rsplit(':', 1)[1][:-1]})"], r.stderr
    for node in _nodes(e):
        assert ssh(e.lab.dir, node["address"], "test -e /var/cache/tvdeploy").returncode == 1


def _cut_ssh_while_dpkg_runs(e: EngineLab, address: str, proc: subprocess.Popen[str]) -> bool:
    """Kill the sshd session that runs dpkg on the node (the connection drops; dpkg, orphaned, may
    go on). True once done; False if the install ended first."""
    find = ("for c in /proc/[0-9]*/comm; do [ \"$(cat $c 2>/dev/null)\" = dpkg ] || continue; "
            "p=${c%/comm}; p=${p#/proc/}; while [ \"$p\" -gt 1 ]; do "
            "[ \"$(cat /proc/$p/comm)\" = sshd ] && { kill -9 $p; echo cut; exit 0; }; "
            "p=$(awk '/^PPid/{print $2}' /proc/$p/status); done; done")
    while proc.poll() is None:
        if ssh(e.lab.dir, address, find).stdout.strip() == "cut":
            return True
        time.sleep(0.2)
    return False


def test_install_survives_a_lost_connection_then_is_a_no_op(engine_lab: EngineLab) -> None:
    e = engine_lab
    victim = _nodes(e)[0]
    gap = AirGap(e.lab.dir)  # every packet bound outside the lab is counted (and dropped) from here
    gap.on()
    gap.reset()
    try:
        _install_cut_and_rerun(e, victim)
        gap.assert_nothing_left()  # the installs never tried to reach anything outside the lab
    finally:
        run_lab("sink", "off", "--dir", e.lab.dir)  # routeless nodes again


def _install_cut_and_rerun(e: EngineLab, victim: dict[str, str]) -> None:
    env = {**os.environ, "TVDEPLOY_HOME": str(e.home), "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "tvdeploy", "engine", "install", str(e.lab.site_file), "--bundle", str(e.bundle),
            "--trust", str(e.trust), "--yes"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        cut = _cut_ssh_while_dpkg_runs(e, victim["address"], proc)
        _out, err = proc.communicate(timeout=900)
    assert cut, "dpkg never ran on the node"
    assert proc.returncode == 1
    assert f"error: node {victim['name']}: " in err and "engine install' again" in err, err

    doc = json.loads(_ok(_install(e)).stdout)  # the rerun finishes the interrupted node
    steps = {r["name"]: r["step"] for r in doc["results"]}
    assert steps[victim["name"]] in ("install", "start")
    assert {r["version"] for r in doc["results"]} == {doc["version"].split("-")[0]}

    again = json.loads(_ok(_install(e)).stdout)
    assert {r["step"] for r in again["results"]} == {"no-op"}
    assert all(r["copied_bytes"] == 0 for r in again["results"])
    plan = _tv(e.home, "engine", "plan", e.lab.site_file, "--bundle", e.bundle, "--trust", e.trust,
               "--detailed-exitcode")
    assert plan.returncode == 0, plan.stderr
    for node in _nodes(e):
        r = ssh(e.lab.dir, node["address"], "test -e /var/cache/tvdeploy/engine && echo leftover || echo clean")
        assert r.stdout.split() == ["clean"], r.stdout


def test_audit_records_every_node_install(engine_lab: EngineLab) -> None:
    from tvdeploy.audit.recorder import site_log_path
    from tvdeploy.config.load import load_site

    e = engine_lab
    log = site_log_path(load_site(e.lab.site_file)).read_text().splitlines()
    records = [json.loads(line) for line in log if '"engine.install"' in line]
    nodes = {o["name"] for r in records if r.get("outcome") == "success" for o in r["objects"] if o["type"] == "engine"}
    assert nodes == {n["name"] for n in _nodes(e)}
    assert any(r.get("outcome") == "failed" for r in records)  # the cut connection


def test_swarm_bootstrap_status_and_import_on_installed_engines(engine_lab: EngineLab) -> None:
    e = engine_lab
    _ok(_tv(e.home, "swarm", "bootstrap", e.lab.site_file, "--yes"))
    status = json.loads(_ok(_tv(e.home, "swarm", "status", e.lab.site_file, "--json")).stdout)
    from tvdeploy.bundle.reader import read_bundle

    engine = read_bundle(e.bundle).engine_packages.engine_version.split("-")[0]  # type: ignore[union-attr]
    text = json.dumps(status)
    assert text.count(f'"{engine}"') >= len(_nodes(e)), text[:2000]  # the engine version of every node
    _ok(_tv(e.home, "bundle", "import", e.lab.site_file, e.bundle, "--trust", e.trust, "--yes"))


def test_apply_runs_the_engine_layer_and_it_is_converged(engine_lab: EngineLab, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.config.load import load_site
    from tvdeploy.execute.site_apply import bundle_release, engine_layer
    from tvdeploy.reporting import NullReporter

    e = engine_lab
    monkeypatch.setenv("TVDEPLOY_HOME", str(e.home))
    assert bundle_release(e.bundle)[2] is True  # apply gets an engine layer for this bundle
    changed, summary = engine_layer(load_site(e.lab.site_file), e.bundle, e.trust, NullReporter(), False)
    version = read_bundle(e.bundle).engine_packages.engine_version  # type: ignore[union-attr]
    assert (changed, summary) == (False, f"Docker Engine {version} on every node")


def test_plan_shows_the_engine_layer_converged_after_the_install(engine_lab: EngineLab) -> None:
    layers = _plan_layers(engine_lab)
    assert layers["engine"]["changes"] is False and layers["engine"]["steps"] == [], layers["engine"]
