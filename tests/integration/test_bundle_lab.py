"""Bundles against the lab's real build engine: build the release's images into one bundle,
sign with 2 of 3 keys, verify, read every image with skopeo, refuse tampered copies."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.reader import read_bundle

pytestmark = pytest.mark.lab


@pytest.fixture
def trust_setup(operator_key: str, tmp_path: Path, cli) -> Path:
    """signer-1..3 and root-1 in the key store; a trust root needing 2 of the 3 signers (via CLI)."""
    from tvdeploy.keys.store import public_pem

    files = []
    for i in (1, 2, 3):
        key, _ = bk.make_key(f"signer-{i}")
        files += ["--signer", tmp_path / f"signer-{i}.pub"]
        (tmp_path / f"signer-{i}.pub").write_bytes(public_pem(key.public_key()))
    bk.make_key("root-1")
    root = tmp_path / "root.json"
    r = cli("trust", "init", "-o", root, *files, "--threshold", "2", "--root-key", "root-1", "--expires",
            "2099-12-31")
    assert r.code == 0, r.stderr
    return root


def test_build_sign_verify_and_skopeo(lab_images, trust_setup: Path, cli, tmp_path: Path) -> None:
    bundle = tmp_path / "release-v1.tar"
    r = cli("bundle", "build", lab_images.release_v1, "--engine", lab_images.docker_host, "-o", bundle)
    assert r.code == 0, r.stderr
    read = read_bundle(bundle)
    release = read.release
    from tvdeploy.release.spec import load_release_spec

    spec = load_release_spec(lab_images.release_v1)
    assert set(release["images"]) == set(spec.images) and len(spec.images) >= 18

    # Every image's manifest digest is what the engine's own image id and layers say.
    import docker

    client = docker.APIClient(base_url=lab_images.docker_host, version="auto")
    inventory = read.inventory["images"]
    for svc, ref in spec.images.items():
        info = client.inspect_image(ref)
        assert inventory[svc]["config"] == info["Id"], svc
        assert [lay["digest"] for lay in inventory[svc]["layers"]] == info["RootFS"]["Layers"], svc
    # Shared layers are stored once: fewer layer blobs than layer references.
    refs = sum(len(i["layers"]) for i in inventory.values())
    distinct = {lay["digest"] for i in inventory.values() for lay in i["layers"]}
    assert len(distinct) < refs

    for key in ("signer-1", "signer-3"):
        r = cli("bundle", "sign", bundle, "--key", key)
        assert r.code == 0, r.stderr
    r = cli("bundle", "verify", bundle, "--trust", trust_setup, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] and sorted(s["name"] for s in doc["signatures"]) == ["signer-1", "signer-3"]

    assert shutil.which("skopeo"), "skopeo is part of the lab's packages"
    for svc, img in release["images"].items():
        res = subprocess.run(["skopeo", "inspect", f"oci-archive:{bundle}:{img['reference']}"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, f"{svc}: {res.stderr}"
        assert json.loads(res.stdout)["Digest"] == img["digest"], svc

    # A copy with one flipped byte in the largest blob is refused, one line, exit 1.
    largest = max(read.blob_digests, key=lambda d: read.files[f"blobs/sha256/{d}"].size)
    tampered = tmp_path / "tampered.tar"
    shutil.copyfile(bundle, tampered)
    with open(tampered, "r+b") as fh:
        fh.seek(read.data_offsets[f"blobs/sha256/{largest}"] + 4096)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 1]))
    r = cli("bundle", "verify", tampered, "--trust", trust_setup)
    assert r.code == 1
    assert r.stderr.strip() == (f"error: {tampered}: blobs/sha256/{largest}: content does not match its digest "
                                f"(it hashes to sha256:{_sha256_of_blob(tampered, read, largest)})")


def _sha256_of_blob(path: Path, read, hexdigest: str) -> str:
    import hashlib

    name = f"blobs/sha256/{hexdigest}"
    with open(path, "rb") as fh:
        fh.seek(read.data_offsets[name])
        h = hashlib.sha256()
        remaining = read.files[name].size
        while remaining:
            chunk = fh.read(min(1 << 20, remaining))
            h.update(chunk)
            remaining -= len(chunk)
    return h.hexdigest()


def test_build_of_an_image_the_engine_lacks(lab_images, operator_key: str, cli, tmp_path: Path) -> None:
    spec = tmp_path / "release.yaml"
    spec.write_text("release: x\nsequence: 1\nimages:\n  ghost: trueverit/ghost:404\n")
    r = cli("bundle", "build", spec, "--engine", lab_images.docker_host, "-o", tmp_path / "b.tar")
    assert r.code == 1
    assert r.stderr.strip() == f"error: image trueverit/ghost:404 not found in build engine {lab_images.docker_host}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.yaml"]
