"""engine plan|install (issue 19): the facts parser on recorded output, the planner on
data-driven cases (data/engine_plan_cases.json), the node scripts, the CLI's one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tvdeploy.bundle.engine_packages import EnginePackages, Package
from tvdeploy.execute.engine_install import install_script, start_script
from tvdeploy.facts.engine import EngineFacts, Installed, parse, probe_command
from tvdeploy.plan.engine import changes, plan_node

CASES = json.loads((Path(__file__).parent / "data" / "engine_plan_cases.json").read_text())
WANTED = EnginePackages("debian-12-amd64", "docker.io", tuple(
    Package(n, v, "all" if n == "netbase" else "amd64", f"{i:064x}", 1000 + i) for i, (n, v) in enumerate([
        ("containerd", "1.6.20~ds1-1+deb12u3"), ("docker.io", "20.10.24+dfsg1-1+deb12u1+b6"),
        ("netbase", "6.4"), ("tini", "0.19.0-1+b3")])))

RECORDED = ("debian 12\namd64\n--tvdeploy-engine--\ncontainerd\t1.6.20~ds1-1+deb12u3\tii \n"
            "docker.io\t20.10.24+dfsg1-1+deb12u1+b6\tii \nnetbase\t6.4\tii \ntini\t0.19.0-1+b3\tii \n"
            "--tvdeploy-engine--\n20.10.24+dfsg1\n")


def test_parse_recorded_output_of_a_node_with_the_engine() -> None:
    facts = parse(RECORDED)
    assert (facts.os_id, facts.os_version, facts.architecture) == ("debian", "12", "amd64")
    assert facts.packages["docker.io"] == Installed("20.10.24+dfsg1-1+deb12u1+b6", True)
    assert facts.running_version == "20.10.24+dfsg1"


def test_parse_a_bare_node_and_garbage() -> None:
    bare = parse("debian 12\namd64\n--tvdeploy-engine--\n--tvdeploy-engine--\n")
    assert bare.packages == {} and bare.running_version == ""
    junk = parse("sh: 1: dpkg: not found\n")
    assert junk.packages == {} and plan_node("n1", WANTED, junk).kind == "unsupported"
    unknown = parse("debian 12\namd64\n--tvdeploy-engine--\ntini\t\tun \n--tvdeploy-engine--\n")
    assert unknown.packages == {}  # known to dpkg, never installed


def test_probe_quotes_package_names() -> None:
    assert "'a;b'" in probe_command(["a;b"])


def _facts(doc: dict[str, Any]) -> EngineFacts:
    os_id, version, arch = doc["os"].split()
    pkgs = {n: Installed(v, s.strip() == "ii") for n, (v, s) in doc["packages"].items()}
    return EngineFacts(os_id, version, arch, pkgs, doc["running"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plan_cases(case: dict[str, Any]) -> None:
    step = plan_node("n1", WANTED, _facts(case["facts"]), case["upgrade"])
    assert step.kind == case["kind"], step.reason
    assert [p.name for p in step.packages] == case["packages"]
    assert changes([step]) is (case["kind"] != "no-op" and case["kind"] != "unsupported")


@pytest.mark.parametrize("script", [install_script(WANTED.packages), start_script(False), start_script(True)])
def test_node_scripts_are_valid_sh(script: str) -> None:
    assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def test_install_script_keeps_config_and_starts_nothing_half_way() -> None:
    text = install_script(WANTED.packages)
    assert "dpkg --force-confdef --force-confold -i '/var/cache/tvdeploy/engine/containerd_1.6.20~ds1-1+deb12u3_amd64.deb'" in text
    assert "dpkg --configure -a" in text and "exit 101" in text and "trap" in text


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    from tests.unit.test_import_cli import site_file as make

    return make.__wrapped__(tmp_path)  # type: ignore[attr-defined]


def _signed(tmp_path: Path, with_debs: bool) -> tuple[Path, Path]:
    import io

    from tests import bundlekit as bk
    from tests.unit.test_bundle_engine_packages import PLAT, _debs
    from tvdeploy.bundle.writer import write_bundle

    images = [bk.service_image("cloud")]
    bundle = tmp_path / "b.tar"
    write_bundle(bundle, bk.spec_for(images), io.BytesIO(bk.docker_save(images)),
                 debs=(PLAT, _debs(tmp_path)) if with_debs else None)
    key = bk.make_key("s1")[0]
    bk.sign_with(bundle, key)
    return bundle, bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root")[0]])


def _one_error(r: Any) -> str:
    assert r.code == 1, (r.code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_cli_without_trust_root_is_one_line(cli: Any, site_file: Path, tmp_path: Path) -> None:
    r = cli("engine", "plan", site_file, "--bundle", tmp_path / "b.tar")
    assert _one_error(r) == f"error: {site_file}: no trust root: pass --trust ROOT or set trust.root in the site file"


def test_a_bundle_without_packages_is_refused(cli: Any, site_file: Path, tmp_path: Path, operator_key: str) -> None:
    bundle, trust = _signed(tmp_path, with_debs=False)
    r = cli("engine", "install", site_file, "--bundle", bundle, "--trust", trust, "--yes")
    assert _one_error(r) == f"error: {bundle}: carries no engine packages (bundle build ... --engine-packages debian-12)"


def test_an_altered_package_is_refused_before_any_node_is_contacted(cli: Any, site_file: Path, tmp_path: Path,
                                                                    operator_key: str) -> None:
    from tvdeploy.bundle.reader import read_bundle

    bundle, trust = _signed(tmp_path, with_debs=True)
    found = read_bundle(bundle)
    pkg = found.engine_packages.packages[0]  # type: ignore[union-attr]
    offset = found.data_offsets[f"blobs/sha256/{pkg.digest}"] + 10
    with open(bundle, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 1]))
    r = cli("engine", "install", site_file, "--bundle", bundle, "--trust", trust, "--yes")
    assert _one_error(r).startswith(f"error: {bundle}: blobs/sha256/{pkg.digest}: content does not match")
    assert "n1" not in r.stderr  # no node was contacted (its SSH port is closed: that would be another error)
