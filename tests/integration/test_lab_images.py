"""`lab images --small`: 18 service images + the registry image in the build engine, layers
shared between versions, deduplication in `docker save`, a real health chain, a broken variant."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.integration.conftest import LabImages
from tests.integration.lab_helpers import docker_cli
from tvdeploy.lab import catalog

pytestmark = pytest.mark.lab


def _layers(images: LabImages, ref: str) -> list[str]:
    r = docker_cli(images.docker_host, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_release_specs_name_18_services_and_the_registry(lab_images: LabImages) -> None:
    for path, version in ((lab_images.release_v1, "1"), (lab_images.release_v2, "2")):
        spec = yaml.safe_load(path.read_text())
        assert spec["release"] == f"lab-v{version}" and spec["sequence"] == int(version)
        assert len(spec["images"]) == 19 and spec["images"]["registry"] == "trueverit/registry:2.8"
        for svc in catalog.SERVICES:
            assert spec["images"][svc] == f"trueverit/{svc}:{version}"
            assert docker_cli(lab_images.docker_host, "image", "inspect", spec["images"][svc]).returncode == 0
    broken = yaml.safe_load(lab_images.release_broken.read_text())
    assert broken["sequence"] == 3
    assert broken["images"][catalog.BROKEN_SERVICE].endswith(":2-broken")
    assert sum(ref.endswith(":2") for ref in broken["images"].values()) == 17


def test_v1_and_v2_differ_only_in_the_application_layer(lab_images: LabImages) -> None:
    base = None
    for svc in catalog.SERVICES:
        v1, v2 = _layers(lab_images, f"trueverit/{svc}:1"), _layers(lab_images, f"trueverit/{svc}:2")
        assert len(v1) == len(v2) == 3
        assert v1[:2] == v2[:2] and v1[2] != v2[2]
        base = base or v1[0]
        assert v1[0] == base  # one shared base layer for all 18


def test_saving_all_together_is_far_smaller_than_each_alone(lab_images: LabImages) -> None:
    refs = [f"trueverit/{svc}:1" for svc in catalog.SERVICES]
    together = docker_cli(lab_images.docker_host, "save", *refs)
    assert together.returncode == 0
    alone = 0
    for ref in refs:
        r = docker_cli(lab_images.docker_host, "save", ref)
        alone += len(r.stdout)
    assert len(together.stdout) * 4 < alone, (len(together.stdout), alone)


def test_registry_image_serves_the_v2_api(lab_images: LabImages) -> None:
    host = lab_images.docker_host
    name = f"tvtest-registry-{time.monotonic_ns()}"
    r = docker_cli(host, "run", "-d", "--name", name, "trueverit/registry:2.8")
    assert r.returncode == 0, r.stderr
    try:
        out = b""
        for _ in range(50):
            probe = docker_cli(host, "exec", name, "/bin/registry", "--version")
            out = probe.stdout
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        assert b"2.8" in out
        logs = docker_cli(host, "logs", name)
        assert b"listening on [::]:5000" in logs.stdout + logs.stderr
    finally:
        docker_cli(host, "rm", "-f", name)


def test_health_follows_the_data_path_and_the_broken_variant_fails(lab_images: LabImages) -> None:
    host = lab_images.docker_host
    net = f"tvtest-{time.monotonic_ns()}"
    assert docker_cli(host, "network", "create", net).returncode == 0
    names = []
    try:
        for svc, ref in (("cloud", "trueverit/cloud:2"), ("iot_flow", "trueverit/iot_flow:2"),
                         ("edge", "trueverit/edge:2"), ("business_analytics", catalog.broken_ref())):  # fmt: skip
            name = f"{net}-{svc}"
            names.append(name)
            r = docker_cli(host, "run", "-d", "--name", name, "--network", net, "--network-alias", svc, ref)
            assert r.returncode == 0, r.stderr
        edge = names[2]
        health = None
        for _ in range(50):
            r = docker_cli(host, "exec", edge, "wget", "-q", "-O-", "http://127.0.0.1:8080/health")
            if r.returncode == 0:
                health = json.loads(r.stdout)
                break
            time.sleep(0.2)
        assert health is not None
        assert health["status"] == "ok" and health["version"] == "2"
        assert health["upstream"]["service"] == "iot_flow"
        assert health["upstream"]["upstream"]["service"] == "cloud"
        version = docker_cli(host, "exec", edge, "wget", "-q", "-O-", "http://127.0.0.1:8080/version")
        assert json.loads(version.stdout) == {"service": "edge", "version": "2"}
        broken = docker_cli(host, "exec", edge, "wget", "-q", "-O-", "http://business_analytics:8080/health/")
        assert broken.returncode != 0 and b"503" in broken.stderr
        # Cut the path: with cloud gone, edge's health fails too.
        docker_cli(host, "rm", "-f", names[0])
        r = docker_cli(host, "exec", edge, "wget", "-q", "-O-", "http://127.0.0.1:8080/health/")
        assert r.returncode != 0
    finally:
        docker_cli(host, "rm", "-f", *names)
        docker_cli(host, "network", "rm", net)


def test_config_and_secret_files_are_read(lab_images: LabImages, tmp_path) -> None:
    host = lab_images.docker_host
    name = f"tvtest-cfg-{time.monotonic_ns()}"
    # REQUIRE_SECRET from the config file; no secret mounted -> unhealthy, and says why.
    # as root here: the test writes what the stack mounts (the images themselves run as 65534)
    r = docker_cli(host, "run", "-d", "--name", name, "--user", "0:0", "--entrypoint", "/bin/sh", "trueverit/cloud:1", "-c",
                   "echo REQUIRE_SECRET=1 > /etc/trueverit/config && exec /bin/sh /app/start.sh")  # fmt: skip
    assert r.returncode == 0, r.stderr
    try:
        body = b""
        for _ in range(50):
            probe = docker_cli(host, "exec", name, "wget", "-q", "-O-", "http://127.0.0.1:8080/health/")
            if b"503" in probe.stderr:
                break
            time.sleep(0.2)
        assert b"503" in probe.stderr
        docker_cli(host, "exec", "-u", "0", name, "sh", "-c", "mkdir -p /run/secrets && echo s3cret > /run/secrets/trueverit")
        body = docker_cli(host, "exec", name, "wget", "-q", "-O-", "http://127.0.0.1:8080/health/").stdout
        doc = json.loads(body)
        assert (doc["status"], doc["config"], doc["secret"]) == ("ok", "loaded", "present")
        assert b"s3cret" not in body
    finally:
        docker_cli(host, "rm", "-f", name)
