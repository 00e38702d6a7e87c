"""Bare lab nodes (tvdeploy.lab.barenode) and the cached Debian root (connectors.debroot): the
pure parts: boot script, the lab-only docker defaults, the bare/with-Docker choice, the recipe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tvdeploy.connectors import debroot
from tvdeploy.errors import RefusedError
from tvdeploy.lab import barenode
from tvdeploy.lab.labstate import LabState, NodeRecord


def test_boot_script_overlays_the_cached_root_and_runs_sshd_chrooted(tmp_path: Path) -> None:
    text = barenode.boot_script("lab-mgr-1", tmp_path / "node dir", Path("/cache/debian-12"))
    lines = text.splitlines()
    assert f"NODE_DIR='{tmp_path}/node dir'" in lines
    assert "LOWER=/cache/debian-12" in lines
    overlay = next(i for i, line in enumerate(lines) if line.startswith("mount -t overlay"))
    binds = [i for i, line in enumerate(lines) if line.startswith("mount --bind")]
    assert all(i > overlay for i in binds)
    assert 'mount --bind "$NODE_DIR/docker" "$ROOT/var/lib/docker"' in lines
    assert 'mount --bind "$NODE_DIR/etc-ssh" "$ROOT/etc/ssh"' in lines
    assert lines[-1] == 'exec chroot "$ROOT" /usr/sbin/sshd -D -e'
    assert "dockerd" not in text  # nothing of Docker until an engine is installed
    assert subprocess.run(["sh", "-n", "-c", text], check=False).returncode == 0


def test_docker_defaults_make_refused_ulimits_soft() -> None:
    script = barenode.DOCKER_DEFAULTS + "ulimit -n 99999999\nulimit -u unlimited\necho ok-$(ulimit -n)\n"
    out = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok-")


def _state(bare: bool, nodes: int) -> LabState:
    st = LabState(index=1, subnet="10.213.1.0/24", bridge="tvlab1", bare=bare)
    st.nodes = [NodeRecord(n, f"n{n}", "manager", "a", f"10.213.1.{10 + n}", "ns", "v") for n in range(nodes)]
    return st


@pytest.mark.parametrize("have,asked,result", [(False, None, False), (True, None, True), (False, True, True)])
def test_choose_keeps_or_sets_the_kind_of_a_lab(have: bool, asked: bool | None, result: bool) -> None:
    st = _state(have, 0 if asked is not None else 3)
    barenode.choose(st, asked, Path("/lab"))
    assert st.bare is result


def test_choose_refuses_to_switch_a_lab_with_nodes() -> None:
    with pytest.raises(RefusedError, match=r"^/lab: this lab has nodes with Docker; run 'tvdeploy lab down"):
        barenode.choose(_state(False, 3), True, Path("/lab"))


def test_lab_state_reads_old_files_without_bare() -> None:
    st = LabState.from_dict({"index": 2, "subnet": "s", "bridge": "b", "nodes": [
        {"number": 1, "name": "n", "role": "manager", "zone": "a", "address": "x", "netns": "ns", "veth": "v"}]})
    assert st.bare is False and st.nodes[0].bare is False


def test_rootfs_name_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    name = debroot.rootfs_name()
    assert name.startswith("debian-12-minbase-")
    monkeypatch.setattr(debroot, "INCLUDE", ("openssh-server", "iproute2", "docker.io"))
    assert debroot.rootfs_name() != name
    assert "--include=openssh-server,iproute2,docker.io" in debroot.mmdebstrap_argv(Path("x.tar"))


def test_a_damaged_cached_tarball_is_one_line(tmp_path: Path) -> None:
    (tmp_path / f"{debroot.rootfs_name()}.tar").write_bytes(b"not a tar")
    with pytest.raises(debroot.RootfsError, match="cannot read ./var/lib/dpkg/status.*remove the file"):
        debroot.baseline_status(tmp_path)
