"""The site registry on the real lab: a replica on every manager, filled by ``bundle import``;
images stay pullable with the first manager's dockerd stopped; a replica that missed an import
is caught up by the next one; every replica refuses a client without a site certificate.

One lab of this module's own (3 managers), one swarm bootstrap, bundles v1, v2 and v3 (v3: v2's
images under a later sequence) built from the lab's build engine and signed. The scenarios run
in file order, each leaving the site as the next expects. Set TVDEPLOY_TEST_REGISTRY_LAB_DIR
(and _HOME) to reuse a lab across runs (reset, not removed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_lab
from tests.integration.lab_helpers import ssh
from tests.integration.swarm_helpers import wait_for

pytestmark = pytest.mark.lab

SERVICE = "t-replicas-cloud"


@dataclass
class RegistryLab:
    dir: Path
    home: Path
    site: Path
    trust: Path
    bundles: dict[str, Path]
    v1_images: dict[str, str]  # service -> reference, from the v1 import's JSON


def _tv(home: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def registry_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("replicas")
    reuse = os.environ.get("TVDEPLOY_TEST_REGISTRY_LAB_DIR")
    lab_dir = Path(reuse) if reuse else base / "lab"
    home = Path(os.environ.get("TVDEPLOY_TEST_REGISTRY_LAB_HOME", base / "home"))
    try:
        run_lab("up", "--dir", lab_dir, home=home)
        if reuse:
            run_lab("reset", "--dir", lab_dir, home=home)
        shutil.rmtree(lab_dir / "state" / "imports", ignore_errors=True)
        run_lab("images", "--small", "--dir", lab_dir, home=home, timeout=1500)
        site = lab_dir / "site.yaml"
        _ok(_tv(home, "swarm", "bootstrap", site, "--yes"))
        for name in ("signer-1", "root-1"):
            if not (home / "keys" / f"{name}.key").exists():
                _ok(_tv(home, "keys", "generate", name, "--no-passphrase"))
        _ok(_tv(home, "keys", "export-public", "signer-1", "-o", base / "signer-1.pub"))
        trust = base / "root.json"
        _ok(_tv(home, "trust", "init", "-o", trust, "--signer", base / "signer-1.pub", "--threshold", 1,
                "--root-key", "root-1", "--expires", "2099-12-31"))
        v3_spec = base / "release-v3.yaml"  # v2's images under a later sequence
        v3_spec.write_text((lab_dir / "release-v2.yaml").read_text().replace("release: lab-v2", "release: lab-v3")
                           .replace("sequence: 2", "sequence: 3"))
        engine = f"unix://{lab_dir / 'engine' / 'docker.sock'}"
        bundles = {}
        for v, spec in (("v1", lab_dir / "release-v1.yaml"), ("v2", lab_dir / "release-v2.yaml"), ("v3", v3_spec)):
            bundles[v] = base / f"release-{v}.tar"
            _ok(_tv(home, "bundle", "build", spec, "--engine", engine, "-o", bundles[v]))
            _ok(_tv(home, "bundle", "sign", bundles[v], "--key", "signer-1"))
        doc = json.loads(_ok(_tv(home, "bundle", "import", site, bundles["v1"], "--trust", trust, "--yes",
                                 "--json")).stdout)
        yield RegistryLab(lab_dir, home, site, trust, bundles, doc["images"])
    finally:
        if not reuse:
            _tv(home, "lab", "down", "--dir", lab_dir, timeout=300)


@pytest.fixture(autouse=True)
def _lab_home(isolated_home: Path, registry_lab: RegistryLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVDEPLOY_HOME", str(registry_lab.home))


def _site(path: Path) -> Any:
    from tvdeploy.config.load import load_site

    return load_site(path)


def _status(cli: Any, site: Path) -> dict[str, Any]:
    r = cli("registry", "status", site, "--json")
    assert r.code == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _curl(pki: Path, address: str, with_cert: bool) -> subprocess.CompletedProcess[str]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert", str(pki / "ca.pem")]
    if with_cert:
        argv += ["--cert", str(pki / "client" / "cert.pem"), "--key", str(pki / "client" / "key.pem")]
    env = {k: v for k, v in os.environ.items() if k not in ("CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE")}
    return subprocess.run([*argv, f"https://{address}:5000/v2/"], capture_output=True, text=True, timeout=30,
                          check=False, env=env)


def test_import_fills_a_replica_on_every_manager(cli: Any, registry_lab: RegistryLab) -> None:
    lab = registry_lab
    site = _site(lab.site)
    status = _status(cli, lab.site)
    assert status["state"] == "running" and status["address"] == "tv-registry:5000"
    assert [(r["node"], r["state"], r["missing"]) for r in status["replicas"]] == [
        (m.name, "running", 0) for m in site.managers]
    assert all(ref.startswith("tv-registry:5000/trueverit/") for ref in lab.v1_images.values())
    hosts = "".join(f"{m.address}\ttv-registry\n" for m in site.managers)
    for node in site.nodes:
        res = ssh(lab.dir, str(node.address), "cat /etc/hosts; cd /etc/docker/certs.d/tv-registry:5000 && "
                  "stat -c '%n %a' ca.crt client.cert client.key && openssl pkey -in client.key -pubout && "
                  "openssl x509 -in client.cert -noout -pubkey && openssl x509 -in client.cert -noout -ext extendedKeyUsage")
        assert res.returncode == 0, (node.name, res.stderr)
        assert hosts in res.stdout, node.name  # every manager, in site-file order
        assert "client.key 400" in res.stdout and "TLS Web Client Authentication" in res.stdout
        keys = re.findall(r"-----BEGIN PUBLIC KEY-----[^-]+-----END PUBLIC KEY-----", res.stdout)
        assert len(keys) == 2 and keys[0] == keys[1], node.name  # the certificate is for the node's own key


def test_every_replica_refuses_a_client_without_a_site_certificate(registry_lab: RegistryLab) -> None:
    from tvdeploy.connectors.registry import Registry, RegistryError
    from tvdeploy.pki.ca import pki_paths

    site = _site(registry_lab.site)
    pki = pki_paths(site).root
    for node in site.managers:
        anonymous = _curl(pki, str(node.address), with_cert=False)
        assert anonymous.returncode != 0 and anonymous.stdout in ("", "000"), node.name
        operator = _curl(pki, str(node.address), with_cert=True)
        assert (operator.returncode, operator.stdout) == (0, "200"), (node.name, operator.stderr)
        with Registry(str(node.address), 5000, pki / "ca.pem") as reg, pytest.raises(RegistryError) as err:
            reg.ping()
        assert err.value.message == (f"registry {node.address}:5000: refused this client: the registry requires a "
                                     "client certificate from the site CA (tvdeploy tls apply issues the operator's)")


def test_scale_up_with_the_first_manager_stopped_pulls_from_another_replica(registry_lab: RegistryLab) -> None:
    from docker.types import ContainerSpec, ServiceMode, TaskTemplate

    from tvdeploy.facts.services import manager_client

    lab = registry_lab
    site = _site(lab.site)
    first = site.managers[0]
    image = lab.v1_images["cloud"]
    others = [n for n in site.nodes if n.name != first.name]
    for node in others:  # nothing cached: the new tasks must pull
        res = ssh(lab.dir, str(node.address), f"docker image ls -q --no-trunc {image.split('@')[0]}")
        assert res.returncode == 0 and res.stdout.strip() == "", node.name
    _ok(_tv(lab.home, "lab", "node", "stop", first.name, "--dir", lab.dir))
    try:
        client = manager_client(site)  # the first manager that answers: not the stopped one
        api = client.api
        try:
            svc = api.create_service(TaskTemplate(ContainerSpec(image)), name=SERVICE,
                                     mode=ServiceMode("replicated", replicas=1))
            try:
                wait_for(lambda: _running(api) >= 1, timeout=120)
                spec = api.inspect_service(svc["ID"])
                api.update_service(svc["ID"], spec["Version"]["Index"], task_template=spec["Spec"]["TaskTemplate"],
                                   name=SERVICE, mode=ServiceMode("replicated", replicas=2 * len(others)))
                wait_for(lambda: _running(api) >= 2 * len(others), timeout=180)
                hosts = {api.inspect_node(t["NodeID"])["Description"]["Hostname"]
                         for t in api.tasks(filters={"service": SERVICE, "desired-state": "running"})}
                assert hosts == {n.name for n in others}
            finally:
                api.remove_service(svc["ID"])
        finally:
            client.close()
    finally:
        _back(lab, first.name)
    for node in others:
        res = ssh(lab.dir, str(node.address), "docker image ls --digests --format '{{.Repository}}@{{.Digest}}'")
        assert image in res.stdout.split(), node.name  # pulled by the name, from a replica that was up
    wait_for(lambda: _replicas_running(site), timeout=120)


def _back(lab: RegistryLab, node: str) -> None:
    """dockerd started again; the manager comes back locked (autolock) until swarm unlock."""
    _ok(_tv(lab.home, "lab", "node", "start", node, "--dir", lab.dir))
    run_lab("up", "--dir", lab.dir, home=lab.home)
    _ok(_tv(lab.home, "swarm", "unlock", lab.site))


def _running(api: Any) -> int:
    tasks = api.tasks(filters={"service": SERVICE, "desired-state": "running"})
    return sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "running")


def _replicas_running(site: Any) -> bool:
    from tvdeploy.execute.registry_status import status

    return status(site)["state"] == "running"


def test_a_replica_down_during_an_import_is_filled_by_the_next_import(cli: Any, registry_lab: RegistryLab) -> None:
    lab = registry_lab
    site = _site(lab.site)
    down = site.managers[1]
    _ok(_tv(lab.home, "lab", "node", "stop", down.name, "--dir", lab.dir))
    try:
        r = cli("bundle", "import", lab.site, lab.bundles["v2"], "--trust", lab.trust, "--yes", "--json")
        assert r.code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["replicas"][down.name].startswith("down: ")
        assert [s for n, s in doc["replicas"].items() if n != down.name] == ["filled", "filled"]
        status = _status(cli, lab.site)
        assert status["state"] == "degraded"
        assert {r["node"]: r["state"] for r in status["replicas"]}[down.name] == "unreachable"
    finally:
        _back(lab, down.name)
    wait_for(lambda: _status(cli, lab.site)["state"] == "running", timeout=120)
    lagging = {r["node"]: r["missing"] for r in _status(cli, lab.site)["replicas"]}
    assert lagging[down.name] > 0 and sum(lagging.values()) == lagging[down.name]  # v2, missing there only
    r = cli("bundle", "import", lab.site, lab.bundles["v3"], "--trust", lab.trust, "--yes", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["replicas"] == {m.name: "filled" for m in site.managers}
    status = _status(cli, lab.site)
    assert [(r["node"], r["state"], r["missing"]) for r in status["replicas"]] == [
        (m.name, "running", 0) for m in site.managers]
    r = cli("registry", "sync", lab.site, "--json")  # nothing left to copy
    assert r.code == 0 and json.loads(r.stdout) == {"copied": {}}, r.stderr
