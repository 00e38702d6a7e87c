"""`bundle import` on the real lab: site registry deployed from the bundle, resumable pushes,
replay refused, tampering changes nothing, services pull by digest with no route out, and the
node-load fallback.

One lab of this module's own, ONE swarm bootstrap (costly), two bundles (v1, v2) built from the
lab's build engine and signed 2-of-2. The scenarios run in file order, each leaving the site as
the next expects: killed v1 import -> resumed -> service from the registry -> tampered v2 refused
-> v2 moves only its new blobs -> v1 replay refused -> node-load mode on a copy of the site.
Set TVDEPLOY_TEST_IMPORT_LAB_DIR (and _HOME) to reuse a lab across runs (reset, not removed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import run_lab
from tests.integration.lab_helpers import ssh
from tests.integration.swarm_helpers import wait_for

pytestmark = pytest.mark.lab


@dataclass
class ImportLab:
    dir: Path
    home: Path
    site: Path
    trust: Path
    v1: Path
    v2: Path
    engine: str = ""
    v2_delta: Path | None = None  # built against the site after the v1 import


def _tv(home: Path, *args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVDEPLOY_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def import_lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("import")
    reuse = os.environ.get("TVDEPLOY_TEST_IMPORT_LAB_DIR")
    lab_dir = Path(reuse) if reuse else base / "lab"
    home = Path(os.environ.get("TVDEPLOY_TEST_IMPORT_LAB_HOME", base / "home"))
    try:
        run_lab("up", "--dir", lab_dir, home=home)
        if reuse:
            run_lab("reset", "--dir", lab_dir, home=home)
        shutil.rmtree(lab_dir / "state" / "imports", ignore_errors=True)
        for stale in ("have-after-v1.json", "release-v2-delta.tar"):
            (lab_dir / stale).unlink(missing_ok=True)
        run_lab("images", "--small", "--dir", lab_dir, home=home, timeout=1500)
        site = lab_dir / "site.yaml"
        _ok(_tv(home, "swarm", "bootstrap", site, "--yes"))
        for name in ("signer-1", "signer-2", "root-1"):
            if not (home / "keys" / f"{name}.key").exists():
                _ok(_tv(home, "keys", "generate", name, "--no-passphrase"))
        pubs = []
        for name in ("signer-1", "signer-2"):
            _ok(_tv(home, "keys", "export-public", name, "-o", base / f"{name}.pub"))
            pubs += ["--signer", base / f"{name}.pub"]
        trust = base / "root.json"
        _ok(_tv(home, "trust", "init", "-o", trust, *pubs, "--threshold", 2, "--root-key", "root-1",
                "--expires", "2099-12-31"))
        engine = f"unix://{lab_dir / 'engine' / 'docker.sock'}"
        bundles = {}
        for v in ("v1", "v2"):
            bundles[v] = base / f"release-{v}.tar"
            _ok(_tv(home, "bundle", "build", lab_dir / f"release-{v}.yaml", "--engine", engine, "-o", bundles[v]))
            for key in ("signer-1", "signer-2"):
                _ok(_tv(home, "bundle", "sign", bundles[v], "--key", key))
        yield ImportLab(lab_dir, home, site, trust, bundles["v1"], bundles["v2"], engine)
    finally:
        if not reuse:
            _tv(home, "lab", "down", "--dir", lab_dir, timeout=300)


@pytest.fixture(autouse=True)
def _lab_home(isolated_home: Path, import_lab: ImportLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVDEPLOY_HOME", str(import_lab.home))


def _site(path: Path) -> Any:
    from tvdeploy.config.load import load_site

    return load_site(path)


def _release(bundle: Path) -> dict[str, Any]:
    from tvdeploy.bundle.reader import read_bundle

    return read_bundle(bundle).release


def _blob_sizes(bundle: Path) -> dict[str, int]:
    from tvdeploy.bundle.reader import read_bundle

    b = read_bundle(bundle)
    return {d: b.files[f"blobs/sha256/{d}"].size for d in b.blob_digests}


def _status(cli: Any, site: Path) -> dict[str, Any]:
    r = cli("registry", "status", site, "--json")
    assert r.code == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def _import(cli: Any, lab: ImportLab, bundle: Path, site: Path | None = None) -> Any:
    return cli("bundle", "import", site or lab.site, bundle, "--trust", lab.trust, "--yes", "--json")


def _audit_events(site: Path) -> list[dict[str, Any]]:
    from tvdeploy.audit.recorder import site_log_path

    path = site_log_path(_site(site))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_v1_import_killed_half_way_resumes_and_moves_only_what_is_missing(cli: Any, import_lab: ImportLab) -> None:
    lab = import_lab
    journal = lab.dir / "state" / "imports" / "journal.jsonl"
    env = {**os.environ, "TVDEPLOY_HOME": str(lab.home)}
    proc = subprocess.Popen([sys.executable, "-m", "tvdeploy", "bundle", "import", str(lab.site), str(lab.v1),
                             "--trust", str(lab.trust), "--yes"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Kill it (SIGKILL: no cleanup at all) once a few images are in the registry.
        wait_for(lambda: journal.exists() and journal.read_text().count('"image"') >= 3 or proc.poll() is not None,
                 timeout=300, interval=0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    done_before = {json.loads(ln)["blob"].split("@")[1].removeprefix("sha256:")
                   for ln in journal.read_text().splitlines()[1:] if '"blob"' in ln}
    sizes = _blob_sizes(lab.v1)
    full = sum(sizes.values()) - sum(  # manifests are not blobs that move as blobs
        len(_manifest_bytes(lab.v1, img["digest"])) for img in _release(lab.v1)["images"].values())

    r = _import(cli, lab, lab.v1)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["resumed"] is True and doc["sequence"] == 1
    assert 0 < doc["bytes_moved"] <= full - sum(sizes[d] for d in done_before)
    assert not journal.exists()

    status = _status(cli, lab.site)
    site = _site(lab.site)
    addr = f"tv-registry:{site.registry.port}"  # the name every node maps to every manager
    assert status["state"] == "running" and status["address"] == addr and status["size_bytes"] > 0
    held = {r["name"]: r["digests"] for r in status["repositories"]}
    for svc, img in _release(lab.v1)["images"].items():
        assert held[img["reference"].rsplit(":", 1)[0]] == [img["digest"]], svc
    for node in site.nodes:  # every node trusts the registry through certs.d
        res = ssh(lab.dir, str(node.address), f"cat /etc/docker/certs.d/{addr}/ca.crt")
        assert res.returncode == 0 and "BEGIN CERTIFICATE" in res.stdout, node.name
    events = [e["event"] for e in _audit_events(lab.site)]
    for event in ("bundle.import.start", "registry.deploy", "bundle.import.image", "bundle.import"):
        assert event in events


def _manifest_bytes(bundle: Path, digest: str) -> bytes:
    from tvdeploy.bundle.reader import read_bundle

    b = read_bundle(bundle)
    name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
    with open(bundle, "rb") as fh:
        fh.seek(b.data_offsets[name])
        return fh.read(b.files[name].size)


def test_service_from_the_registry_runs_on_a_node_with_no_route_out(import_lab: ImportLab) -> None:
    from tvdeploy.execute.swarm_session import Clients, open_clients

    lab = import_lab
    site = _site(lab.site)
    target = site.nodes[-1]  # not the first manager (first in /etc/hosts): the image comes over the network
    assert target.name != site.managers[0].name
    routes = ssh(lab.dir, str(target.address), "ip route")
    assert routes.returncode == 0 and "default" not in routes.stdout
    digest = _release(lab.v1)["images"]["cloud"]["digest"]
    image = f"tv-registry:{site.registry.port}/trueverit/cloud@{digest}"
    with open_clients(site, Clients()) as clients:
        api = clients[site.managers[0].name].api
        from docker.types import ContainerSpec, Placement, TaskTemplate

        svc = api.create_service(TaskTemplate(ContainerSpec(image), placement=Placement(
            constraints=[f"node.hostname=={target.name}"])), name="t-import-cloud")
        try:
            def running() -> bool:
                tasks = api.tasks(filters={"service": "t-import-cloud"})
                return any((t.get("Status") or {}).get("State") == "running" for t in tasks)

            wait_for(running, timeout=120)
            images = clients[target.name].api.images()
            assert any(f"trueverit/cloud@{digest}" in " ".join(i.get("RepoDigests") or []) for i in images)
        finally:
            api.remove_service(svc["ID"])


def test_tampered_bundle_leaves_the_registry_unchanged(cli: Any, import_lab: ImportLab, tmp_path: Path) -> None:
    from tvdeploy.bundle.reader import read_bundle

    lab = import_lab
    before = _status(cli, lab.site)
    tampered = tmp_path / "tampered.tar"
    shutil.copyfile(lab.v2, tampered)
    b = read_bundle(tampered)
    largest = max(b.blob_digests, key=lambda d: b.files[f"blobs/sha256/{d}"].size)
    with open(tampered, "r+b") as fh:
        fh.seek(b.data_offsets[f"blobs/sha256/{largest}"] + 1000)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 1]))
    r = cli("bundle", "import", lab.site, tampered, "--trust", lab.trust, "--yes")
    assert r.code == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: {tampered}: blobs/sha256/{largest}: content does not match its digest "
                      f"(it hashes to sha256:{_hash_blob(tampered, b, largest)})"]
    assert _status(cli, lab.site) == before
    assert not (lab.dir / "state" / "imports" / "journal.jsonl").exists()


def _hash_blob(path: Path, b: Any, hexd: str) -> str:
    import hashlib

    name = f"blobs/sha256/{hexd}"
    with open(path, "rb") as fh:
        fh.seek(b.data_offsets[name])
        return hashlib.sha256(fh.read(b.files[name].size)).hexdigest()


def test_v2_delta_imports_and_moves_only_its_new_blobs(cli: Any, import_lab: ImportLab, tmp_path: Path) -> None:
    lab = import_lab
    v1, v2 = _blob_sizes(lab.v1), _blob_sizes(lab.v2)
    rel2 = _release(lab.v2)
    manifests = {img["digest"].removeprefix("sha256:") for img in rel2["images"].values()}
    new = {d: s for d, s in v2.items() if d not in v1 and d not in manifests}
    # The delta: built against what the site holds now (its signed inventory), then signed.
    have = lab.dir / "have-after-v1.json"
    r = cli("bundle", "inventory", lab.site, "-o", have)
    assert r.code == 0, r.stderr
    delta = lab.dir / "release-v2-delta.tar"
    _ok(_tv(lab.home, "bundle", "build", lab.dir / "release-v2.yaml", "--engine", lab.engine, "-o", delta,
            "--since", have))
    for key in ("signer-1", "signer-2"):
        _ok(_tv(lab.home, "bundle", "sign", delta, "--key", key))
    lab.v2_delta = delta
    assert delta.stat().st_size < lab.v2.stat().st_size / 10
    r = _import(cli, lab, delta)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["resumed"] is False and doc["bytes_moved"] == sum(new.values())
    assert doc["bytes_moved"] < doc["bytes_skipped"] / 10
    held = {r["name"]: r["digests"] for r in _status(cli, lab.site)["repositories"]}
    for img in rel2["images"].values():
        assert img["digest"] in held[img["reference"].rsplit(":", 1)[0]]


def test_replaying_v1_after_v2_is_refused(cli: Any, import_lab: ImportLab) -> None:
    lab = import_lab
    before = _status(cli, lab.site)
    r = cli("bundle", "import", lab.site, lab.v1, "--trust", lab.trust, "--yes")
    assert r.code == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors == ["error: release lab-v1 has sequence 1, not greater than the last completed import on "
                      "this site (release lab-v2, sequence 2): refused (replay or rollback of an older bundle)"]
    # A fresh operator machine (no local record) is refused too: the managers keep the record.
    (lab.dir / "state" / "imports" / "last.json").unlink()
    r = cli("bundle", "import", lab.site, lab.v1, "--trust", lab.trust, "--yes")
    assert r.code == 1 and "not greater than the last completed import" in r.stderr
    assert _status(cli, lab.site) == before


def test_inventory_lists_what_the_site_registry_holds(cli: Any, import_lab: ImportLab, tmp_path: Path) -> None:
    from tvdeploy.bundle.inventory import read_inventory

    lab = import_lab
    r = cli("bundle", "inventory", lab.site, "-o", tmp_path / "have.json")
    assert r.code == 0, r.stderr
    have = read_inventory(tmp_path / "have.json")  # what `bundle build --since` reads
    assert have.last_release is not None and have.last_release["sequence"] == 2
    assert {f"sha256:{d}" for d in _blob_sizes(lab.v1)} | {f"sha256:{d}" for d in _blob_sizes(lab.v2)} \
        == set(have.digests)


def test_node_load_mode_gives_every_node_the_images_with_matching_ids(cli: Any, import_lab: ImportLab,
                                                                      tmp_path: Path) -> None:
    lab = import_lab
    doc = yaml.safe_load(lab.site.read_text())
    doc["registry"] = {"mode": "node-load", "port": doc["registry"]["port"]}
    doc["site"]["name"] = "lab-nodeload"
    site_file = tmp_path / "site-node-load.yaml"
    site_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    site = _site(site_file)
    # A site that never had a registry import: forget the record (operator and managers).
    shutil.rmtree(lab.dir / "state" / "imports", ignore_errors=True)
    for node in site.managers:
        assert ssh(lab.dir, str(node.address), "rm -f /etc/docker/tvdeploy/last-import.json").returncode == 0
    # The v2 delta expects v1's layers on every node: refused, with the list, nothing written.
    assert lab.v2_delta is not None
    r = cli("bundle", "import", site_file, lab.v2_delta, "--trust", lab.trust, "--yes")
    assert r.code == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: delta bundle: ") and "are not on this site: sha256:" in errors[0]
    assert not (lab.dir / "state" / "imports" / "journal.jsonl").exists()
    r = _import(cli, lab, lab.v1, site=site_file)
    assert r.code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["mode"] == "node-load" and sorted(result["nodes"]) == sorted(n.name for n in site.nodes)
    from tvdeploy.bundle.reader import read_bundle

    inventory = read_bundle(lab.v1).inventory["images"]
    from tvdeploy.execute.swarm_session import Clients, open_clients

    with open_clients(site, Clients()) as clients:
        for node in site.nodes:
            for svc, img in _release(lab.v1)["images"].items():
                info = clients[node.name].api.inspect_image(inventory[svc]["config"])
                assert info["Id"] == inventory[svc]["config"] == result["images"][svc], (node.name, svc)
                assert img["reference"] in info["RepoTags"], (node.name, svc)
    # Again: every image is there, nothing moves; a no-op that says so (issue 16: idempotent).
    r = cli("bundle", "import", site_file, lab.v1, "--trust", lab.trust, "--yes")
    assert r.code == 0 and "already imported" in r.stdout
    r = cli("bundle", "inventory", site_file, "-o", tmp_path / "have.json", "--json")
    assert r.code == 0, r.stderr
    from tvdeploy.bundle.inventory import read_inventory

    have = read_inventory(tmp_path / "have.json")
    assert have.last_release is not None and have.last_release["sequence"] == 1
    for svc in inventory:
        assert inventory[svc]["config"] in have.digests
        assert {lay["digest"] for lay in inventory[svc]["layers"]} <= have.digests
