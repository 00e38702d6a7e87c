"""The lab's vCenter simulator: real vcsim process, real TLS, real pyvmomi."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.vcsim_site import site_doc
from tvdeploy.lab.vcenter import start_vcenter, stop_vcenter, vcenter_status

pytestmark = pytest.mark.lab


@pytest.fixture
def lab_dir(tmp_path: Path):
    yield tmp_path / "lab"
    stop_vcenter(tmp_path / "lab")


def test_start_is_idempotent_and_status_and_stop_twice(lab_dir: Path) -> None:
    info = start_vcenter(lab_dir)
    again = start_vcenter(lab_dir)
    assert again == info
    assert vcenter_status(lab_dir) == info
    assert info.url == f"https://127.0.0.1:{info.port}/sdk"
    assert len(info.fingerprint) == 64 and info.fingerprint == info.fingerprint.lower()
    for secret in (info.password_file, lab_dir / "vcenter" / "key.pem"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    stop_vcenter(lab_dir)
    stop_vcenter(lab_dir)
    assert vcenter_status(lab_dir) is None
    with pytest.raises(ProcessLookupError):
        os.kill(info.pid, 0)


def test_other_latency_restarts_on_the_same_port_with_the_same_pin(lab_dir: Path) -> None:
    first = start_vcenter(lab_dir)
    slow = start_vcenter(lab_dir, latency_ms=20)
    assert slow.pid != first.pid
    assert (slow.port, slow.fingerprint) == (first.port, first.fingerprint)


def test_pyvmomi_connects_with_the_pin_and_finds_the_template(lab_dir: Path) -> None:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.vsphere import connect

    info = start_vcenter(lab_dir)
    (lab_dir / "known_hosts").write_text("")
    doc = site_doc(info)
    doc["ssh"]["known_hosts"] = str(lab_dir / "known_hosts")
    site = Site.model_validate(doc)
    with connect(site) as session:
        placement = session.placement()
        assert placement.template.name == info.template
        assert placement.template.config.template is True
        assert placement.folder.name == info.folder


def test_wrong_password_is_refused(lab_dir: Path) -> None:
    from pyVim.connect import Connect
    from pyVmomi import vim

    from tvdeploy.config.site import VCenter
    from tvdeploy.connectors.vsphere import tls_context

    info = start_vcenter(lab_dir)
    ctx = tls_context(VCenter.model_validate(site_doc(info)["vcenter"]))
    with pytest.raises(vim.fault.InvalidLogin):
        Connect(host=info.host, port=info.port, user=info.user, pwd="not-the-password", sslContext=ctx)
    with pytest.raises(vim.fault.InvalidLogin):
        Connect(host=info.host, port=info.port, user="someone-else", pwd=info.password_file.read_text(),
                sslContext=ctx)
