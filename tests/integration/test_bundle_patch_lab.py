"""Byte-level patches on the real lab (issue 18, "Done when"): the one-file hot-fix of the
large-layer service (``lab images --large-layer``: cloud with a 24 MiB application layer here,
one 1 MiB file changed in large-2) as a delta bundle with a patch, signed, verified, imported into
the site registry (the patched layer rebuilt from the base read back from it), and a service
created through the Docker API from ``<registry>/trueverit/cloud@<release manifest digest>``
runs on the lab (``release hotfix`` will replace that step). The compressed form of the same
delta verifies and inspects as it is. Then the same hot-fix on a node-load site (bases read
from a node).

One lab of this module's own (or $TVDEPLOY_TEST_PATCH_LAB_DIR, reset, not removed), ONE swarm
bootstrap; the scenarios run in file order.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_lab
from tests.integration.swarm_helpers import wait_for
from tests.integration.test_import_lab import _ok, _tv

pytestmark = pytest.mark.lab

LARGE = 24 * 1024 * 1024


@dataclass
class PatchLab:
    dir: Path
    home: Path
    site: Path
    trust: Path
    engine: str
    work: Path


@pytest.fixture(scope="module")
def patch_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("patch")
    reuse = os.environ.get("TVDEPLOY_TEST_PATCH_LAB_DIR")
    lab_dir = Path(reuse) if reuse else base / "lab"
    home = Path(os.environ.get("TVDEPLOY_TEST_PATCH_LAB_HOME", base / "home"))
    try:
        run_lab("up", "--dir", lab_dir, home=home)
        if reuse:
            run_lab("reset", "--dir", lab_dir, home=home)
        shutil.rmtree(lab_dir / "state" / "imports", ignore_errors=True)
        run_lab("images", "--small", "--large-layer", "--large-size", f"{LARGE}", "--dir", lab_dir, home=home,
                timeout=1500)
        site = lab_dir / "site.yaml"
        _ok(_tv(home, "swarm", "bootstrap", site, "--yes"))
        for name in ("signer-1", "root-1"):
            if not (home / "keys" / f"{name}.key").exists():
                _ok(_tv(home, "keys", "generate", name, "--no-passphrase"))
        _ok(_tv(home, "keys", "export-public", "signer-1", "-o", base / "signer-1.pub"))
        trust = base / "root.json"
        _ok(_tv(home, "trust", "init", "-o", trust, "--signer", base / "signer-1.pub", "--threshold", 1,
                "--root-key", "root-1", "--expires", "2099-12-31"))
        yield PatchLab(lab_dir, home, site, trust, f"unix://{lab_dir / 'engine' / 'docker.sock'}", base)
    finally:
        if not reuse:
            _tv(home, "lab", "down", "--dir", lab_dir, timeout=300)


@pytest.fixture(autouse=True)
def _lab_home(isolated_home: Path, patch_lab: PatchLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVDEPLOY_HOME", str(patch_lab.home))


def _json(proc: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_ok(proc).stdout)
    return doc


def test_large_v1_full_bundle_imports(patch_lab: PatchLab) -> None:
    lab = patch_lab
    v1 = lab.work / "large-v1.tar"
    _ok(_tv(lab.home, "bundle", "build", lab.dir / "release-large-v1.yaml", "--engine", lab.engine, "-o", v1,
            "--key", "signer-1"))
    doc = _json(_tv(lab.home, "bundle", "import", lab.site, v1, "--trust", lab.trust, "--yes", "--json"))
    assert doc["sequence"] == 1 and doc["mode"] == "site-registry"


def test_one_file_hotfix_ships_as_a_patch_of_about_the_file(patch_lab: PatchLab) -> None:
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.lab.catalog import LARGE_FILE

    lab = patch_lab
    have = lab.work / "HAVE.json"
    _ok(_tv(lab.home, "bundle", "inventory", lab.site, "-o", have))
    delta = lab.work / "large-v2-delta.tar"
    r = _ok(_tv(lab.home, "bundle", "build", lab.dir / "release-large-v2.yaml", "--engine", lab.engine, "-o",
                delta, "--since", have, "--key", "signer-1"))
    assert "1 layer(s) shipped as byte-level patches" in r.stdout
    b = read_bundle(delta)
    cloud = b.inventory["images"]["cloud"]
    large = max(cloud["layers"], key=lambda lay: lay["size"])
    patch = b.patches[large["digest"].removeprefix("sha256:")]
    assert patch.size == large["size"] > LARGE
    patch_bytes = b.files[f"blobs/sha256/{patch.patch}"].size
    metadata = sum(r.size for p, r in b.files.items() if p.startswith("blobs/") and p != f"blobs/sha256/{patch.patch}")
    assert patch_bytes <= 2 * LARGE_FILE, patch_bytes  # the target
    assert delta.stat().st_size <= 2 * LARGE_FILE + metadata + 64 * 1024  # + tar headers, json files

    r = _ok(_tv(lab.home, "bundle", "verify", delta, "--trust", lab.trust))
    assert "1 layer(s) shipped as byte-level patches against 1 base layer(s) the site must hold" in r.stdout
    doc = _json(_tv(lab.home, "bundle", "inspect", delta, "--json"))
    assert doc["images"]["cloud"]["patched_bytes"] == large["size"]
    assert doc["images"]["cloud"]["shipped_bytes"] < 2 * LARGE_FILE + 64 * 1024
    assert all(i["patched_bytes"] == 0 for svc, i in doc["images"].items() if svc != "cloud")


def test_patched_delta_imports_and_the_service_runs_the_release_digest(patch_lab: PatchLab) -> None:
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.config.load import load_site
    from tvdeploy.execute.swarm_session import Clients, open_clients

    lab = patch_lab
    delta = lab.work / "large-v2-delta.tar"
    doc = _json(_tv(lab.home, "bundle", "import", lab.site, delta, "--trust", lab.trust, "--yes", "--json"))
    release = read_bundle(delta).release
    digest = release["images"]["cloud"]["digest"]
    site = load_site(lab.site)
    from tvdeploy.release.registry_address import endpoint

    registry = endpoint(site).host  # tv-registry:<port>: a replica on every manager
    assert doc["sequence"] == 2 and doc["images"]["cloud"] == f"{registry}/trueverit/cloud@{digest}"
    image = f"{registry}/trueverit/cloud@{digest}"
    target = site.nodes[-1]
    with open_clients(site, Clients()) as clients:
        api = clients[site.managers[0].name].api
        from docker.types import ContainerSpec, Placement, TaskTemplate

        svc = api.create_service(TaskTemplate(ContainerSpec(image), placement=Placement(
            constraints=[f"node.hostname=={target.name}"])), name="t-patch-cloud")
        try:
            def running() -> bool:
                tasks = api.tasks(filters={"service": "t-patch-cloud"})
                return any((t.get("Status") or {}).get("State") == "running" for t in tasks)

            wait_for(running, timeout=180)
            spec_image = api.inspect_service(svc["ID"])["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            assert spec_image == image
            images = clients[target.name].api.images()
            assert any(f"trueverit/cloud@{digest}" in " ".join(i.get("RepoDigests") or []) for i in images)
        finally:
            api.remove_service(svc["ID"])


def test_compressed_form_of_the_delta_verifies_and_inspects(patch_lab: PatchLab) -> None:
    lab = patch_lab
    have = lab.work / "HAVE.json"
    packed = lab.work / "large-v2-delta.tar.zst"
    r = _ok(_tv(lab.home, "bundle", "build", lab.dir / "release-large-v2.yaml", "--engine", lab.engine, "-o",
                packed, "--since", have, "--key", "signer-1", "--compress"))
    assert "zstd-compressed" in r.stdout
    _ok(_tv(lab.home, "bundle", "verify", packed, "--trust", lab.trust))
    doc = _json(_tv(lab.home, "bundle", "inspect", packed, "--json"))
    assert doc["compressed"] is True and doc["patched"]["layers"] == 1


def test_node_load_rebuilds_the_patched_layer_from_a_node(patch_lab: PatchLab, tmp_path: Path) -> None:
    """A site without a registry: the base is read from a node (docker save of an image that
    holds it), the layer rebuilt on the operator's machine, loaded onto every node; every node
    then has the hot-fixed image by its id."""
    import yaml

    from tests.integration.lab_helpers import ssh
    from tvdeploy.bundle.reader import read_bundle
    from tvdeploy.config.load import load_site
    from tvdeploy.execute.site_registry import docker_client

    lab = patch_lab
    doc = yaml.safe_load(lab.site.read_text())
    doc["registry"] = {"mode": "node-load", "port": doc["registry"]["port"]}
    doc["site"]["name"] = "lab-nodeload-patch"
    site_file = tmp_path / "site-node-load.yaml"
    site_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    site = load_site(site_file)
    shutil.rmtree(lab.dir / "state" / "imports", ignore_errors=True)
    for node in site.managers:
        assert ssh(lab.dir, str(node.address), "rm -f /etc/docker/tvdeploy/last-import.json").returncode == 0
    _json(_tv(lab.home, "bundle", "import", site_file, lab.work / "large-v1.tar", "--trust", lab.trust, "--yes",
              "--json"))
    have = tmp_path / "HAVE-nodes.json"
    _ok(_tv(lab.home, "bundle", "inventory", site_file, "-o", have))
    delta = tmp_path / "large-v2-nodes.tar"
    r = _ok(_tv(lab.home, "bundle", "build", lab.dir / "release-large-v2.yaml", "--engine", lab.engine, "-o",
                delta, "--since", have, "--key", "signer-1"))
    assert "1 layer(s) shipped as byte-level patches" in r.stdout
    result = _json(_tv(lab.home, "bundle", "import", site_file, delta, "--trust", lab.trust, "--yes", "--json"))
    assert result["mode"] == "node-load" and result["sequence"] == 2
    config = read_bundle(delta).inventory["images"]["cloud"]["config"]
    assert result["images"]["cloud"] == config
    for node in site.nodes:
        api = docker_client(site, node).api
        try:
            assert api.inspect_image(config)["Id"] == config, node.name
        finally:
            api.close()
    assert list((lab.dir / "state" / "imports" / "rebuilt").iterdir()) == []  # rebuilt layers and bases gone
