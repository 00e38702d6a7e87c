"""Policy checks on the real lab: after `swarm bootstrap` (and services created from the lab's
image through the Docker API: the release deploy of v1 is wired in by the release engine, which
extends this test), `policy check` passes at fail_on: high with its remaining findings listed;
then each fault, done to the lab, is found and named with its node or service, and undone:
daemon.json at mode 0622 on one node, a created (not running) privileged container, a service
updated by hand to mount the Docker socket, autolock off, bundle images with a setuid file and a
private key in a layer."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.swarm_helpers import load_image, manager_client, small_image, wait_for

pytestmark = pytest.mark.lab

PEM = b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n"


def _tv(home: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _check(cli: Any, site: Path, *args: object) -> tuple[int, dict[str, Any]]:
    r = cli("policy", "check", site, "--json", *args)
    assert r.code in (0, 1), r.stderr
    return r.code, json.loads(r.stdout)


def _failed(doc: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["rule"] == rule and f["status"] == "fail"]


def _ssh(site_path: Path, node: str, cmd: str) -> None:
    from tvdeploy.config.load import load_site
    from tvdeploy.connectors.ssh import SSHPool

    with SSHPool(load_site(site_path)) as pool:
        pool.get(node).run(cmd)


def _image(api: Any, ref: str, name: str, data: bytes, mode: int) -> None:
    """A lab image: the small base plus one file of *mode* (COPY drops setuid bits: chmod in a RUN)."""
    buf = io.BytesIO()
    dockerfile = f"FROM {ref}\nCOPY f {name}\nRUN [\"/bin/busybox\", \"chmod\", \"{mode:o}\", \"{name}\"]\n"
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member, content, m in (("Dockerfile", dockerfile.encode(), 0o644), ("f", data, 0o644)):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(content), m
            tar.addfile(info, io.BytesIO(content))
    tag = f"tvpolicy/{name.split('/')[-1]}:1"
    for chunk in api.build(fileobj=io.BytesIO(buf.getvalue()), custom_context=True, tag=tag,
                       rm=True, decode=True, pull=False):
        assert "error" not in chunk, chunk


@pytest.fixture
def policy_site(lab_reset: Any, lab_images: Any, lab_home: Path) -> Any:
    proc = _tv(lab_home, "swarm", "bootstrap", lab_reset.site_file, "--yes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return lab_reset


@pytest.fixture(autouse=True)
def _home(isolated_home: Path, lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVDEPLOY_HOME", str(lab_home))


def test_faults_are_found_named_and_undone(cli: Any, policy_site: Any, lab_images: Any, lab_home: Path,
                                           tmp_path: Path) -> None:
    import yaml

    from tvdeploy.config.load import load_site
    from tvdeploy.execute.swarm_session import Clients, open_clients

    # The services below are made through the API from a plain image id (not the Trueverit stack):
    # check them against the CIS pack only; the product pack (site registry, tiers) is the deploy
    # tests' business (tests/integration/test_release_lab.py checks a deployed stack with both).
    doc = yaml.safe_load(policy_site.site_file.read_text())
    doc.setdefault("policies", {})["packs"] = ["cis-docker"]
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(doc))
    site = load_site(site_path)
    clients = open_clients(site, Clients())
    try:
        ref = small_image(lab_images.docker_host)
        load_image(lab_images.docker_host, ref, clients)
        manager = manager_client(clients, site)
        image_id = clients["lab-mgr-1"].api.inspect_image(ref)["Id"]
        _services(manager, image_id)

        code, doc = _check(cli, site_path)
        assert code == 0, [f for f in doc["findings"] if f["status"] == "fail" and f["severity"] in ("high", "critical")]
        assert doc["summary"]["fail"] > 0  # remaining findings are listed (audit rules, plain overlays, ...)
        assert {f["object"] for f in doc["findings"] if f["target"] == "stack"} >= {"pol-a", "pol-b"}
        assert {f["node"] for f in doc["findings"] if f["target"] == "host"} >= {"lab-mgr-1", "lab-mgr-2", "lab-mgr-3"}
        assert any(f["rule"] == "TVD-324" and f["status"] == "not-applicable" for f in doc["findings"])

        # 1. daemon.json 0622 on one node
        _ssh(site_path, "lab-mgr-2", "chmod 0622 /etc/docker/daemon.json")
        try:
            code, doc = _check(cli, site_path, "--target", "host")
            [f] = _failed(doc, "TVD-418")
            assert code == 1 and f["node"] == "lab-mgr-2" and "mode 0622" in f["evidence"]
        finally:
            _ssh(site_path, "lab-mgr-2", "chmod 0644 /etc/docker/daemon.json")
        assert not _failed(_check(cli, site_path, "--target", "host")[1], "TVD-418")

        # 2. a created (not running) privileged container on one node
        api3 = clients["lab-mgr-3"].api
        c = api3.create_container(image_id, command=["sleep", "1"], name="pol-priv",
                                  host_config=api3.create_host_config(privileged=True))
        try:
            code, doc = _check(cli, site_path, "--target", "engine")
            [f] = _failed(doc, "TVD-301")
            assert code == 1 and f["node"] == "lab-mgr-3" and f["object"] == "container pol-priv"
        finally:
            api3.remove_container(c["Id"], force=True)
        assert not _failed(_check(cli, site_path, "--target", "engine")[1], "TVD-301")

        # 3. a service updated by hand to mount the Docker socket
        svc = manager.services.get("pol-a")
        svc.update(mounts=["/var/run/docker.sock:/var/run/docker.sock:ro"])
        code, doc = _check(cli, site_path, "--target", "stack")
        [f] = _failed(doc, "TVD-112")
        assert code == 1 and f["object"] == "pol-a" and "live service spec" in f["message"]
        manager.services.get("pol-a").update(mounts=[])
        assert not _failed(_check(cli, site_path, "--target", "stack")[1], "TVD-112")

        # 4. autolock turned off (undone by the bootstrap, which escrows the new unlock key)
        manager.swarm.update(autolock_managers=False)
        code, doc = _check(cli, site_path, "--target", "swarm")
        [f] = _failed(doc, "TVD-503")
        assert code == 1 and "AutoLockManagers: false" in f["evidence"]
        proc = _tv(lab_home, "swarm", "bootstrap", site_path, "--yes")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not _failed(_check(cli, site_path, "--target", "swarm")[1], "TVD-503")

        # 5. bundle images with a setuid file and with a private key in a layer
        build = _build_api(lab_images.docker_host)
        _image(build, ref, "/bin/su", b"\x7fELF-not-really", 0o4755)
        _image(build, ref, "/srv/id_rsa", PEM, 0o600)
        spec = tmp_path / "release.yaml"
        spec.write_text(yaml.safe_dump({"release": "policy-1", "sequence": 1,
                                        "images": {"suid": "tvpolicy/su:1", "keyed": "tvpolicy/id_rsa:1"}}))
        bundle = tmp_path / "b.tar"
        r = cli("bundle", "build", spec, "--engine", lab_images.docker_host, "-o", bundle)
        assert r.code == 0, r.stderr
        code, doc = _check(cli, site_path, "--bundle", bundle, "--target", "image")
        assert code == 1
        assert [f["object"] for f in _failed(doc, "TVD-203")] == ["suid"]
        assert "/bin/su (setuid, mode 4755)" in _failed(doc, "TVD-203")[0]["evidence"]
        assert [f["object"] for f in _failed(doc, "TVD-204")] == ["keyed"]
    finally:
        for name in ("pol-a", "pol-b"):
            try:
                manager_client(clients, site).services.get(name).remove()
            except Exception:  # noqa: BLE001, S110 - best effort clean-up
                pass
        clients.close()


def _build_api(docker_host: str) -> Any:
    import docker

    return docker.APIClient(base_url=docker_host, timeout=600)


def _services(manager: Any, image: str) -> None:
    from docker.types import Healthcheck, Resources, RestartPolicy

    for name in ("pol-a", "pol-b"):
        manager.services.create(
            image, command=["sleep", "3600"], name=name, user="65534:65534", read_only=True,
            cap_drop=["ALL"], networks=["tv-backend"],
            resources=Resources(cpu_limit=100_000_000, mem_limit=32 * 1024 * 1024),
            restart_policy=RestartPolicy(condition="on-failure", max_attempts=5),
            healthcheck=Healthcheck(test=["CMD", "true"], interval=10**10),
        )
    wait_for(lambda: all(manager.services.get(n).attrs for n in ("pol-a", "pol-b")), timeout=30)


def test_lab_overlays_waived_and_reported_in_every_format(cli: Any, policy_site: Any, tmp_path: Path) -> None:
    """The lab's plain overlay networks (its kernel has no ESP) waived by a signed waiver: the
    findings stay in every report, as waived; SARIF validates; JUnit parses."""
    from datetime import UTC, datetime, timedelta
    from xml.etree import ElementTree as ET

    from tests import policykit as pk

    now = datetime.now(UTC).replace(microsecond=0)
    issued, expires = (now - timedelta(days=1)).isoformat(), (now + timedelta(days=60)).date().isoformat()
    key, entry = pk.approver(tmp_path)
    waiver = pk.write_waiver(tmp_path / "overlay.yaml", pk.waiver_doc(
        "TVD-506", {"object": "network tv-data"}, issued=issued, expires=expires), key)
    doc = yaml.safe_load(policy_site.site_file.read_text())
    doc["policies"] = {"packs": ["cis-docker"], "fail_on": "medium", "waivers": [str(waiver)], "approvers": [entry]}
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(doc))
    r = cli("policy", "check", site, "--target", "swarm", "--json")
    found = json.loads(r.stdout)["findings"]
    [waived] = [f for f in found if f["status"] == "waived"]
    assert waived["object"] == "network tv-data" and waived["waiver"]["approver"] == "alice"
    assert {f["object"] for f in found if f["rule"] == "TVD-506" and f["status"] == "fail"} >= {"network ingress"}
    assert r.code == 1  # fail_on medium: the other plain overlays still fail

    sarif_out, junit_out = tmp_path / "r.sarif", tmp_path / "r.xml"
    assert cli("policy", "check", site, "--target", "swarm", "--format", "sarif", "-o", sarif_out).code == 1
    assert cli("policy", "check", site, "--target", "swarm", "--format", "junit", "-o", junit_out).code == 1
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json").read_text())
    report = json.loads(sarif_out.read_text())
    jsonschema.Draft4Validator(schema).validate(report)
    assert any(res.get("suppressions") for res in report["runs"][0]["results"])
    skipped = [c for c in ET.parse(junit_out).getroot().iter("testcase") if c.find("skipped") is not None]
    assert any(f"waived until {expires}" in (c.find("skipped").get("message") or "") for c in skipped)
