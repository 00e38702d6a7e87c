"""The site registry's pure parts: its name and replicas, the /etc/hosts block, the swarm
service spec, when a replica's (or a node's client) certificate is reissued, and which images a
lagging replica gets copied."""

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


def test_service_spec_runs_a_replica_on_every_manager_that_verifies_clients_and_never_pulls() -> None:
    spec = R.service_spec(IMAGE, 5443)
    container = spec["task_template"]["ContainerSpec"]
    assert spec["name"] == "tv-registry" and spec["mode"] == {"Global": {}}
    assert container["Image"] == IMAGE  # an image id: the task never tries a pull
    assert spec["task_template"]["Placement"]["Constraints"] == ["node.role==manager"]
    assert spec["endpoint_spec"]["Ports"] == [
        {"PublishedPort": 5443, "TargetPort": 5000, "Protocol": "tcp", "PublishMode": "host"}]
    mounts = {m["Target"]: m for m in container["Mounts"]}
    assert mounts["/certs"]["Type"] == "bind" and mounts["/certs"]["Source"] == R.CERT_DIR
    assert mounts["/certs"]["ReadOnly"] is True
    assert mounts["/var/lib/registry"]["Type"] == "volume" and mounts["/var/lib/registry"]["Source"] == R.VOLUME
    assert "REGISTRY_HTTP_TLS_KEY=/certs/key.pem" in container["Env"]
    assert "REGISTRY_HTTP_TLS_CLIENTCAS=[/certs/ca.pem]" in container["Env"]  # anonymous clients refused


def test_service_spec_is_hardened_like_the_stack_services() -> None:
    """The policy rules the stack meets (TVD-104 capabilities, TVD-105/106/107 limits, TVD-108
    read-only root) hold for tvdeploy's own registry service too."""
    template = R.service_spec(IMAGE, 5000)["task_template"]
    container = template["ContainerSpec"]
    assert container["CapabilityDrop"] == ["ALL"] and "CapabilityAdd" not in container
    assert container["ReadOnly"] is True
    assert {m["Target"]: m["Type"] for m in container["Mounts"]}["/tmp"] == "tmpfs"
    limits = template["Resources"]["Limits"]
    assert limits["MemoryBytes"] == 512 * 1024 * 1024 and limits["NanoCPUs"] == 10**9 and limits["Pids"] == 256


def test_spec_is_current_replaces_the_older_single_replica_registry() -> None:
    import docker.types

    args = R.service_spec(IMAGE, 5000)
    live = {"Spec": {"Mode": args["mode"], "TaskTemplate": dict(args["task_template"]),
                     "EndpointSpec": dict(args["endpoint_spec"])}}
    assert R.spec_is_current(live, 5000)
    assert not R.spec_is_current(live, 5443)  # another port
    old = {**live["Spec"], "Mode": {"Replicated": {"Replicas": 1}}}
    assert not R.spec_is_current({"Spec": old}, 5000)
    env = [e for e in live["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] if "CLIENTCAS" not in e]
    template = {**live["Spec"]["TaskTemplate"], "ContainerSpec": docker.types.ContainerSpec(IMAGE, env=env)}
    assert not R.spec_is_current({"Spec": {**live["Spec"], "TaskTemplate": template}}, 5000)
    # a registry from before the hardening: no limits, capabilities kept -> replaced
    unhardened = {**live["Spec"]["TaskTemplate"], "Resources": {}}
    assert not R.spec_is_current({"Spec": {**live["Spec"], "TaskTemplate": unhardened}}, 5000)
    caps = {k: v for k, v in live["Spec"]["TaskTemplate"]["ContainerSpec"].items() if k != "CapabilityDrop"}
    assert not R.spec_is_current({"Spec": {**live["Spec"], "TaskTemplate": {
        **live["Spec"]["TaskTemplate"], "ContainerSpec": caps}}}, 5000)


def test_restart_args_keep_the_spec_and_bump_force_update() -> None:
    existing = {"Spec": {"Name": "tv-registry", "Labels": {"a": "b"}, "Mode": {"Replicated": {"Replicas": 1}},
                         "TaskTemplate": {"ContainerSpec": {"Image": IMAGE}, "ForceUpdate": 2},
                         "EndpointSpec": {"Ports": []}}}
    args = R.restart_args(existing)
    assert args["task_template"]["ForceUpdate"] == 3 and args["task_template"]["ContainerSpec"]["Image"] == IMAGE
    assert existing["Spec"]["TaskTemplate"]["ForceUpdate"] == 2  # not mutated
    assert args["labels"] == {"a": "b"} and args["name"] == "tv-registry"


def test_services_pull_by_name_from_a_replica_on_every_manager(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    ep = registry_address.endpoint(site)
    assert ep.host == "tv-registry:5000"  # what every image reference starts with
    assert ep.reference("trueverit/cloud", "sha256:" + "a" * 64) == "tv-registry:5000/trueverit/cloud@sha256:" + "a" * 64
    assert [(r.node, r.where) for r in ep.replicas] == [(m.name, f"{m.address}:5000") for m in site.managers]
    assert (ep.node, ep.address) == (site.managers[0].name, str(site.managers[0].address))
    assert registry_address.certs_d_path(ep) == "/etc/docker/certs.d/tv-registry:5000/ca.crt"


def test_hosts_block_maps_the_name_to_every_manager_and_keeps_other_lines(tmp_path: Path) -> None:
    ep = registry_address.endpoint(make_site(tmp_path))
    block = registry_address.hosts_block(ep)
    assert block.splitlines()[1:-1] == [f"{r.address}\ttv-registry" for r in ep.replicas]
    base = "127.0.0.1\tlocalhost\n10.9.9.9 tv-registry # the operator's own line, outside the block\n"
    once = registry_address.with_hosts_block(base, ep)
    assert once == base + block
    assert registry_address.with_hosts_block(once, ep) == once  # idempotent
    moved = once.replace(str(ep.replicas[0].address), "10.30.0.99") + "::1\tlocalhost\n"
    again = registry_address.with_hosts_block(moved, ep)
    assert again == base + "::1\tlocalhost\n" + block  # the stale block replaced, later lines kept
    assert registry_address.with_hosts_block("", ep) == block
    unterminated = base + registry_address.HOSTS_BEGIN + "\n10.1.1.1\ttv-registry\n"
    assert registry_address.with_hosts_block(unterminated, ep) == base + block


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


NAMES = ServerNames(dns=("tv-registry", "tv-mgr-1"), ips=("10.30.0.11",))


def test_certificate_reissue_reasons(site_ca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    assert R._needs_certificate(_cert(site_ca, NAMES), site_ca.cert, NAMES, now) is None
    assert R._needs_certificate(_cert(site_ca, NAMES, days=10), site_ca.cert, NAMES, now) == "expires within 30 days"
    other_ip = ServerNames(dns=NAMES.dns, ips=("10.30.0.12",))
    assert R._needs_certificate(_cert(site_ca, other_ip), site_ca.cert, NAMES, now) == "addresses changed"
    no_name = ServerNames(dns=("tv-mgr-1",), ips=NAMES.ips)  # a certificate from before the name
    assert R._needs_certificate(_cert(site_ca, no_name), site_ca.cert, NAMES, now) == "names changed"
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", None, now)
    assert R._needs_certificate(_cert(other, NAMES), site_ca.cert, NAMES, now) == "not issued by the site CA"
    assert R._needs_certificate(b"garbage", site_ca.cert, NAMES, now) == "not issued by the site CA"
    assert R._needs_certificate(_cert(site_ca, NAMES), site_ca.cert, NAMES, now + timedelta(days=340)) \
        == "expires within 30 days"


def test_replica_names_carry_the_registry_name_and_the_replica_address(tmp_path: Path) -> None:
    ep = registry_address.endpoint(make_site(tmp_path))
    names = R.replica_names(ep.replicas[-1])
    assert names.dns == ("tv-registry", ep.replicas[-1].node) and names.ips == (ep.replicas[-1].address,)


def test_node_client_certificate_reasons(site_ca, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from tvdeploy.execute.registry_trust import client_cert_reason
    from tvdeploy.pki.issue import sign_client_csr

    now = utcnow()
    csr, _key = node_csr("tv-wkr-1 registry client")
    cert = sign_client_csr(site_ca, csr, "tv-wkr-1", "plant-t", 365, now)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [o._name for o in eku] == ["clientAuth"]
    assert cert.subject.rfc4514_string() == "CN=tv-wkr-1 registry client,O=tvdeploy plant-t"
    assert client_cert_reason(pem, True, site_ca.cert, now) is None
    assert client_cert_reason(pem, False, site_ca.cert, now) == "none yet"  # the key is gone
    assert client_cert_reason(b"", True, site_ca.cert, now) == "none yet"
    assert client_cert_reason(pem, True, site_ca.cert, now + timedelta(days=340)) == "expires within 30 days"
    other = ca_mod.create_ca(ca_mod.CAPaths(tmp_path / "other"), "x", None, now)
    assert client_cert_reason(pem, True, other.cert, now) == "not issued by the site CA"


def test_a_lagging_replica_gets_what_the_others_hold() -> None:
    from tvdeploy.execute.registry_sync import Tagged, plan_copies

    a, b, c = ("sha256:" + x * 64 for x in "abc")
    held = {
        "m1": {("trueverit/cloud", "1"): a, ("trueverit/cloud", "2"): b},
        "m2": {("trueverit/cloud", "1"): a},  # was down during the v2 import
        "m3": {("trueverit/cloud", "1"): a, ("trueverit/cloud", "2"): c, ("trueverit/edge", "2"): c},
    }
    copies, warnings = plan_copies(held)
    assert copies == {
        "m1": [(Tagged("trueverit/edge", "2", c), "m3")],
        "m2": [(Tagged("trueverit/cloud", "2", b), "m1"), (Tagged("trueverit/edge", "2", c), "m3")],
        "m3": [(Tagged("trueverit/cloud", "2", b), "m1")],  # the first replica's tag wins
    }
    assert warnings == [f"trueverit/cloud:2 is {c[:19]} on m3 but {b[:19]} on m1; m1's is kept"]
    assert plan_copies({"m1": held["m1"], "m2": dict(held["m1"])}) == ({}, [])


def test_registry_client_names_a_missing_operator_certificate(site_ca, tmp_path: Path) -> None:
    from tvdeploy.connectors.registry import Registry, _client_refused
    from tvdeploy.errors import InputFileError

    missing = tmp_path / "client" / "cert.pem"
    with pytest.raises(InputFileError) as err:
        Registry("10.30.0.11", 5000, site_ca.paths.cert, (missing, tmp_path / "client" / "key.pem"))
    assert err.value.message == f"{missing}: operator client certificate not found; run tvdeploy tls apply first"
    assert _client_refused("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)")
    assert not _client_refused("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer")
