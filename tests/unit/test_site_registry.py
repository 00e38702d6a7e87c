"""The site registry's pure parts: its address, the swarm service spec and when its certificate is
reissued."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.unit.tls_helpers import make_site, node_csr
from tvdeploy.execute import site_registry as R
from tvdeploy.pki import ca as ca_mod
from tvdeploy.pki.certinfo import utcnow
from tvdeploy.pki.issue import ServerNames, sign_server_csr
from tvdeploy.release import registry_address

IMAGE = "sha256:" + "c" * 64


def test_service_spec_pins_the_task_to_the_key_holder_and_never_pulls() -> None:
    spec = R.service_spec("node-id-1", IMAGE, 5443)
    container = spec["task_template"]["ContainerSpec"]
    assert spec["name"] == "tv-registry" and spec["mode"] == {"Replicated": {"Replicas": 1}}
    assert container["Image"] == IMAGE  # an image id: the task never tries a pull
    assert spec["task_template"]["Placement"]["Constraints"] == ["node.id==node-id-1", "node.role==manager"]
    assert spec["endpoint_spec"]["Ports"] == [
        {"PublishedPort": 5443, "TargetPort": 5000, "Protocol": "tcp", "PublishMode": "host"}]
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert mounts["/certs"]["Type"] == "bind" and mounts["/certs"]["Source"] == R.CERT_DIR
    assert mounts["/certs"]["ReadOnly"] is True
    assert mounts["/var/lib/registry"]["Type"] == "volume" and mounts["/var/lib/registry"]["Source"] == R.VOLUME
    assert "REGISTRY_HTTP_TLS_KEY=/certs/key.pem" in container["Env"]


def test_restart_args_keep_the_spec_and_bump_force_update() -> None:
    existing = {"Spec": {"Name": "tv-registry", "Labels": {"a": "b"}, "Mode": {"Replicated": {"Replicas": 1}},
                         "TaskTemplate": {"ContainerSpec": {"Image": IMAGE}, "ForceUpdate": 2},
                         "EndpointSpec": {"Ports": []}}}
    args = R.restart_args(existing)
    assert args["task_template"]["ForceUpdate"] == 3 and args["task_template"]["ContainerSpec"]["Image"] == IMAGE
    assert existing["Spec"]["TaskTemplate"]["ForceUpdate"] == 2  # not mutated
    assert args["labels"] == {"a": "b"} and args["name"] == "tv-registry"


def test_endpoint_is_the_first_manager(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    ep = registry_address.endpoint(site)
    assert (ep.node, ep.host) == ("tv-mgr-1", "10.30.0.11:5000")
    assert registry_address.certs_d_path(ep) == "/etc/docker/certs.d/10.30.0.11:5000/ca.crt"


@pytest.fixture
def site_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEST_CA_PASSPHRASE", "test-passphrase")
    site = make_site(tmp_path)
    ca, _ = ca_mod.load_or_create_ca(site, utcnow())
    return ca


def _cert(ca, names: ServerNames, days: int = 365) -> bytes:
    from cryptography.hazmat.primitives import serialization

    csr, _key = node_csr("tv-registry")
    return sign_server_csr(ca, csr, "tv-mgr-1", "plant-t", names, days, utcnow()).public_bytes(
        serialization.Encoding.PEM)


NAMES = ServerNames(dns=("tv-mgr-1", "tv-registry"), ips=("10.30.0.11", "10.30.0.12"))


def test_certificate_reissue_reasons(site_ca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    assert R._needs_certificate(_cert(site_ca, NAMES), site_ca.cert, NAMES, now) is None
    assert R._needs_certificate(_cert(site_ca, NAMES, days=10), site_ca.cert, NAMES, now) == "expires within 30 days"
    fewer = ServerNames(dns=NAMES.dns, ips=("10.30.0.11",))
    assert R._needs_certificate(_cert(site_ca, fewer), site_ca.cert, NAMES, now) == "addresses changed"
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", None, now)
    assert R._needs_certificate(_cert(other, NAMES), site_ca.cert, NAMES, now) == "not issued by the site CA"
    assert R._needs_certificate(b"garbage", site_ca.cert, NAMES, now) == "not issued by the site CA"
    assert R._needs_certificate(_cert(site_ca, NAMES), site_ca.cert, NAMES, now + timedelta(days=340)) \
        == "expires within 30 days"
