"""Pure parts of the lab: topology, names, site file, doctor verdict, catalog, init script,
build contexts, lab state. No root, no server."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from tvdeploy.lab import catalog
from tvdeploy.lab.doctor import PACKAGES, Facts, diagnose
from tvdeploy.lab.images import Context, app_context, linked_libraries
from tvdeploy.lab.layout import MAX_INDEX, LabLayout
from tvdeploy.lab.nodes import tolerant_init_script
from tvdeploy.lab.sitefile import LabSiteInputs, SiteNode, VcenterSection, node_entry_yaml, render_site
from tvdeploy.lab.topology import NodeSpec, next_worker, plan_nodes

# -- topology ------------------------------------------------------------------------------------
TOPOLOGY = [
    (1, ["lab-mgr-1"], 1),
    (2, ["lab-mgr-1", "lab-wkr-1"], 1),
    (3, ["lab-mgr-1", "lab-mgr-2", "lab-mgr-3"], 3),
    (6, ["lab-mgr-1", "lab-mgr-2", "lab-mgr-3", "lab-wkr-1", "lab-wkr-2", "lab-wkr-3"], 3),
]


@pytest.mark.parametrize(("total", "names", "managers"), TOPOLOGY)
def test_plan_nodes(total: int, names: list[str], managers: int) -> None:
    specs = plan_nodes(total)
    assert [s.name for s in specs] == names
    assert sum(s.role == "manager" for s in specs) == managers
    assert [s.number for s in specs] == list(range(1, total + 1))
    assert {s.zone for s in specs} == ({"core"} if total == 1 else {"core", "edge"})


@pytest.mark.parametrize("total", [0, -1, 33])
def test_plan_nodes_refuses_silly_counts(total: int) -> None:
    with pytest.raises(ValueError):
        plan_nodes(total)


def test_next_worker_follows_the_existing_ones() -> None:
    nodes = plan_nodes(6)
    nxt = next_worker(nodes)
    assert (nxt.number, nxt.name, nxt.role) == (7, "lab-wkr-4", "worker")
    assert next_worker(plan_nodes(3)) == NodeSpec(4, "lab-wkr-1", "worker", "edge")


# -- names -------------------------------------------------------------------------------------
def test_kernel_names_fit_in_15_characters_and_labs_differ() -> None:
    big = LabLayout(Path("/x"), MAX_INDEX)
    assert len(big.bridge) <= 15 and len(big.veth(240)) <= 15
    a, b = LabLayout(Path("/a"), 1), LabLayout(Path("/b"), 2)
    assert a.subnet != b.subnet and a.bridge != b.bridge and a.veth(1) != b.veth(1)
    assert a.netns("lab-mgr-1") != b.netns("lab-mgr-1")
    assert str(a.node_address(1)) == "10.213.1.11" and str(a.gateway) == "10.213.1.1"
    assert a.node_address(1) in a.subnet


def test_a_too_long_lab_dir_is_refused_with_one_line(tmp_path: Path) -> None:
    from tvdeploy.errors import ConfigError
    from tvdeploy.lab.engine import check_socket_path

    long_dir = tmp_path / ("x" * 120)
    with pytest.raises(ConfigError, match="too long"):
        check_socket_path(LabLayout(long_dir, 1))


# -- site file ---------------------------------------------------------------------------------
def _inputs(tmp_path: Path, vcenter: bool) -> LabSiteInputs:
    vc = VcenterSection("127.0.0.1", 8989, "user", str(tmp_path / "vcenter/password"), "ab" * 32,
                        "dc", "cluster", "ds", "folder", "template", "VM Network") if vcenter else None  # fmt: skip
    nodes = [SiteNode(s.name, s.role, f"10.213.7.{10 + s.number}", s.zone) for s in plan_nodes(3)]
    return LabSiteInputs(str(tmp_path), "10.213.7.0/24", "10.213.7.1", nodes, vc)


@pytest.mark.parametrize("vcenter", [True, False])
def test_site_file_is_valid(tmp_path: Path, vcenter: bool) -> None:
    from tvdeploy.config.load import load_site

    path = tmp_path / "site.yaml"
    path.write_text(render_site(_inputs(tmp_path, vcenter)))
    site = load_site(path)
    assert [n.name for n in site.nodes] == ["lab-mgr-1", "lab-mgr-2", "lab-mgr-3"]
    assert site.swarm.encrypted_networks is False and site.swarm.publish_mode == "host"
    assert site.registry.mode == "site-registry" and site.network.dns == []
    assert site.pki.ca_passphrase == f"file:{tmp_path}/secrets/ca_passphrase"
    assert site.state_dir == tmp_path / "state"
    assert (site.vcenter is not None) is vcenter
    assert "env:" not in path.read_text()
    assert "ESP" in path.read_text()  # the why of the swarm section is in the file


def test_node_entry_is_a_list_item() -> None:
    import yaml

    text = node_entry_yaml(SiteNode("lab-wkr-1", "worker", "10.213.1.14", "edge"))
    assert text.startswith("- name: lab-wkr-1")
    assert yaml.safe_load(text)[0]["address"] == "10.213.1.14"


# -- doctor --------------------------------------------------------------------------------------
ALL_COMMANDS = frozenset(["ip", "iptables", "nsenter", "unshare", "dockerd", "docker", "sshd", "tini",
                          "busybox", "docker-registry", "skopeo", "go"])  # fmt: skip


def _facts(**changes: object) -> Facts:
    base = dict(euid=0, installed=frozenset(PACKAGES), commands=ALL_COMMANDS, netns=True, pidns=True, overlay=True)
    base.update(changes)
    return Facts(**base)  # type: ignore[arg-type]


def test_doctor_ok_on_a_complete_machine() -> None:
    d = diagnose(_facts())
    assert d.ok and d.apt_command is None


def test_doctor_without_root_and_with_missing_packages_gives_the_exact_apt_line() -> None:
    d = diagnose(_facts(euid=1000, installed=frozenset(PACKAGES) - {"skopeo", "tini"},
                        commands=ALL_COMMANDS - {"tini", "skopeo"}))  # fmt: skip
    assert not d.ok
    assert d.problems[0].startswith("not root")
    assert d.apt_command == "apt-get install -y skopeo tini"
    assert any("apt-get install -y skopeo tini" in p for p in d.problems)


def test_doctor_reports_kernel_gaps() -> None:
    d = diagnose(_facts(netns=False, overlay=False))
    assert len(d.problems) == 2 and d.apt_command is None


def test_lab_up_prints_the_doctors_list_and_exits_1(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tvdeploy.lab.up as up

    monkeypatch.setattr(up, "gather", lambda: _facts(euid=1000, installed=frozenset(PACKAGES) - {"tini"},
                                                     commands=ALL_COMMANDS - {"tini"}))  # fmt: skip
    r = cli("lab", "up", "--dir", tmp_path / "lab")
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert "  - not root" in r.stderr and "  fix: apt-get install -y tini" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: lab doctor: not root")
    assert not (tmp_path / "lab").exists()  # nothing made


def test_lab_doctor_command_fails_the_same_way(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import tvdeploy.lab.doctor as doctor

    monkeypatch.setattr(doctor, "gather", lambda: _facts(euid=1000))
    r = cli("lab", "doctor", "--json")
    assert r.code == 1
    import json

    doc = json.loads(r.stdout.split("\n}\n")[0] + "\n}")
    assert doc["ok"] is False and doc["problems"][0].startswith("not root")


# -- catalog and release specs -------------------------------------------------------------------
def test_catalog_has_18_services_and_the_named_ones() -> None:
    assert len(catalog.SERVICES) == 18
    named = {"cloud", "edge", "iot_flow", "business_analytics", "backup_engine", "cloud_wsgi", "edge_wsgi",
             "nginx_cloud", "nginx_edge"}  # fmt: skip
    assert named <= set(catalog.SERVICES)
    assert set(catalog.SERVICES.values()) == set(catalog.FAMILIES)


@pytest.mark.parametrize(("version", "broken", "release", "sequence"),
                         [("1", False, "lab-v1", 1), ("2", False, "lab-v2", 2), ("2", True, "lab-v2-broken", 3)])
def test_release_spec(version: str, broken: bool, release: str, sequence: int) -> None:
    spec = catalog.release_spec(version, broken)
    assert (spec["release"], spec["sequence"]) == (release, sequence)
    assert len(spec["images"]) == 19 and spec["images"]["registry"] == "trueverit/registry:2.8"
    assert (spec["images"]["business_analytics"] == "trueverit/business_analytics:2-broken") is broken


def test_release_spec_validates_with_the_product_loader_if_present(tmp_path: Path) -> None:
    loader = pytest.importorskip("tvdeploy.release.spec")
    import yaml

    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(catalog.release_spec("1")))
    load = getattr(loader, "load_release_spec", None)
    if load is None:
        pytest.skip("no load_release_spec in tvdeploy.release.spec")
    load(path)


# -- init script -------------------------------------------------------------------------------
SAMPLE_INIT = """#!/bin/sh
set -e
case "$1" in
\tstart)
\t\tulimit -n 1048576
\t\tif [ "$BASH" ]; then
\t\t\tulimit -u unlimited
\t\telse
\t\t\tulimit -p unlimited
\t\tfi
\t\tlog_begin_msg "Starting $DOCKER_DESC: $BASE"
\t\tstart-stop-daemon --start
\t\tlog_end_msg $?
\t\t;;
\tstop)
\t\tlog_end_msg $?
\t\t;;
esac
"""


@pytest.mark.parametrize("text", [SAMPLE_INIT, Path("/etc/init.d/docker").read_text()
                                  if Path("/etc/init.d/docker").exists() else SAMPLE_INIT])  # fmt: skip
def test_init_script_tolerates_ulimits_and_waits_for_dockerd(text: str, tmp_path: Path) -> None:
    out = tolerant_init_script(text)
    for line in out.splitlines():
        if line.strip().startswith("ulimit "):
            assert "|| " in line
    assert out.count("_tv_wait_ready \"$_tv_log_size\"") == 1
    assert out.count("log_end_msg $_tv_rc") == 1  # only in start, stop keeps its own
    script = tmp_path / "docker"
    script.write_text(out)
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0


# -- build contexts ------------------------------------------------------------------------------
LDD = """\tlinux-vdso.so.1 (0x00007ffd0b7f3000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e0b000000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e0b400000)
\tlibmissing.so => not found
"""


def test_linked_libraries_from_ldd() -> None:
    assert linked_libraries(LDD) == ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
    assert linked_libraries("\tnot a dynamic executable\n") == []


def test_contexts_are_deterministic_and_versions_differ_only_in_the_app() -> None:
    a, b = app_context("edge", "1", "small"), app_context("edge", "1", "small")
    assert a == b
    v2 = app_context("edge", "2", "small")
    names = tarfile.open(fileobj=io.BytesIO(a)).getnames()
    assert "rootfs/www/cgi-bin/index.cgi" in names and "rootfs/app/service.env" in names
    env = tarfile.open(fileobj=io.BytesIO(v2)).extractfile("rootfs/app/service.env")
    assert env is not None and b"VERSION=2" in env.read()
    broken = tarfile.open(fileobj=io.BytesIO(app_context("edge", "2", "small", broken=True)))
    f = broken.extractfile("rootfs/app/service.env")
    assert f is not None and b"BROKEN=1" in f.read()


def test_context_members_have_fixed_owner_and_time() -> None:
    ctx = Context()
    ctx.file("a/b/c.txt", b"x")
    ctx.symlink("a/sh", "busybox")
    for m in tarfile.open(fileobj=io.BytesIO(ctx.bytes())).getmembers():
        assert (m.uid, m.gid, m.mtime) == (0, 0, 1_700_000_000)
