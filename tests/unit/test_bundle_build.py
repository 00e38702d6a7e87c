"""Building a bundle from a ``docker save`` stream (synthetic archives in the real format stand in
for the build engine here; tests/integration/test_bundle_lab.py uses the lab's real engine)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.reader import read_bundle
from tvdeploy.bundle.writer import write_bundle
from tvdeploy.errors import TvdeployError


def test_layout_release_inventory_and_manifest(tmp_path: Path) -> None:
    images = bk.default_images()
    path = bk.make_bundle(tmp_path / "b.tar", images)
    items = {info.name: data for info, data in bk.members(path)}
    names = list(items)
    assert names[:4] == ["oci-layout", "blobs", "blobs/sha256", names[3]]
    assert names[-5:] == ["index.json", "release.json", "inventory.json", "manifest.json", "signatures"]
    assert json.loads(items["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    blobs = [n for n in names if n.startswith("blobs/sha256/")]
    assert len(blobs) == len(set(blobs))
    for name in blobs:  # content addressed
        assert hashlib.sha256(items[name]).hexdigest() == name.rsplit("/", 1)[1]
    # 3 images sharing one base layer: 1 base + 3 top layers + 3 configs + 3 manifests.
    assert len(blobs) == 10
    assert f"blobs/sha256/{hashlib.sha256(bk.BASE_LAYER).hexdigest()}" in items

    index = json.loads(items["index.json"])
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    release = json.loads(items["release.json"])
    assert release["release"] == "2026.11-1" and release["sequence"] == 1
    for img in images:
        svc = img.tag.split("/")[1].split(":")[0]
        assert release["images"][svc] == {"reference": img.tag, "digest": refs[img.tag]}
        manifest = json.loads(items["blobs/sha256/" + refs[img.tag].removeprefix("sha256:")])
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["digest"] == f"sha256:{img.config_hex}"
        assert [lay["mediaType"] for lay in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar"] * 2
        assert [lay["digest"] for lay in manifest["layers"]] == [
            f"sha256:{hashlib.sha256(lay).hexdigest()}" for lay in img.layers
        ]

    inventory = json.loads(items["inventory.json"])["images"]
    assert inventory["cloud"]["labels"] == {"org.opencontainers.image.title": "cloud"}
    assert inventory["cloud"]["created"] == "2026-11-01T00:00:00Z"
    assert [lay["size"] for lay in inventory["cloud"]["layers"]] == [len(lay) for lay in images[0].layers]

    listed = json.loads(items["manifest.json"])["files"]
    files = {n for n, _ in items.items() if n not in ("blobs", "blobs/sha256", "signatures", "manifest.json")}
    assert set(listed) == files
    for name, entry in listed.items():
        assert entry == {"size": len(items[name]), "sha256": hashlib.sha256(items[name]).hexdigest()}


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = bk.make_bundle(tmp_path / "a.tar")
    b = bk.make_bundle(tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()


def test_layers_without_symlinks_are_still_stored_once(tmp_path: Path) -> None:
    # Separate saves (or older engines) repeat a shared layer: the second copy is dropped.
    images = bk.default_images()
    path = tmp_path / "b.tar"
    write_bundle(path, bk.spec_for(images), io.BytesIO(bk.docker_save(images, symlink_shared=False)))
    bundle = read_bundle(path)
    assert len(bundle.blob_digests) == 10
    linked = bk.make_bundle(tmp_path / "linked.tar", images)
    assert path.read_bytes() == linked.read_bytes()


def test_large_layer_is_streamed_not_kept(tmp_path: Path) -> None:
    # Over the in-memory bound (1 MiB): written while hashed, header fixed up afterwards.
    big = bk.layer_tar({"data": bytes(range(256)) * 12_000})
    images = [bk.FakeImage("trueverit/big:1", [bk.BASE_LAYER, big])]
    bundle = read_bundle(bk.make_bundle(tmp_path / "b.tar", images))
    assert hashlib.sha256(big).hexdigest() in bundle.blob_digests


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_save_archives_with_long_names(tmp_path: Path, fmt: int) -> None:
    # Names over 100 bytes: pax 'path' records or GNU long-name entries carry them.
    images = bk.default_images()
    data = bk.docker_save(images, fmt=fmt, dir_prefix="x" * 80)
    assert len(data) > 0
    path = tmp_path / "b.tar"
    write_bundle(path, bk.spec_for(images), io.BytesIO(data))
    assert path.read_bytes() == bk.make_bundle(tmp_path / "ref.tar", images).read_bytes()


def test_layer_over_the_pipeline_threshold(tmp_path: Path) -> None:
    # Over 8 MiB: received on one thread, hashed and written on another.
    import random

    from tvdeploy.bundle import tarout

    rng = random.Random(7)
    big = bk.layer_tar({"blob": rng.randbytes(tarout.PIPELINE_MIN + 12345)})
    images = [bk.FakeImage("trueverit/huge:1", [bk.BASE_LAYER, big])]
    path = bk.make_bundle(tmp_path / "b.tar", images)
    bundle = read_bundle(path)
    assert hashlib.sha256(big).hexdigest() in bundle.blob_digests
    record = bundle.files[f"blobs/sha256/{hashlib.sha256(big).hexdigest()}"]
    with open(path, "rb") as fh:
        fh.seek(bundle.data_offsets[record.path])
        assert fh.read(record.size) == big


def test_memory_budget_for_small_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the budget small files (configs, tiny layers) go straight into the bundle; configs are
    # read back from it. Same images, same digests.
    from tvdeploy.bundle import savestream

    normal = read_bundle(bk.make_bundle(tmp_path / "a.tar")).release
    monkeypatch.setattr(savestream, "MAX_SMALL_TOTAL", 100)
    frugal = read_bundle(bk.make_bundle(tmp_path / "b.tar")).release
    assert frugal == normal


def test_two_services_may_share_an_image(tmp_path: Path) -> None:
    from tvdeploy.release.spec import ReleaseSpec

    img = bk.service_image("nginx")
    spec = ReleaseSpec.model_validate({"release": "r", "sequence": 1,
                                       "images": {"nginx-a": img.tag, "nginx-b": img.tag}})
    write_bundle(tmp_path / "b.tar", spec, io.BytesIO(bk.docker_save([img])))
    rel = read_bundle(tmp_path / "b.tar").release
    assert rel["images"]["nginx-a"]["digest"] == rel["images"]["nginx-b"]["digest"]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_reads_every_image(tmp_path: Path) -> None:
    images = bk.default_images()
    path = bk.make_bundle(tmp_path / "b.tar", images)
    release = read_bundle(path).release
    for svc, img in release["images"].items():
        res = subprocess.run(["skopeo", "inspect", f"oci-archive:{path}:{img['reference']}"],
                             capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(res.stdout)["Digest"] == img["digest"], svc


def _assert_nothing_left(tmp_path: Path) -> None:
    assert [p.name for p in tmp_path.iterdir()] == []


def test_truncated_save_stream_leaves_nothing(tmp_path: Path) -> None:
    data = bk.docker_save(bk.default_images())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TvdeployError, match="docker save stream: "):
        write_bundle(out / "b.tar", bk.spec_for(bk.default_images()), io.BytesIO(data[: len(data) // 2]))
    _assert_nothing_left(out)


def test_image_missing_from_stream(tmp_path: Path) -> None:
    images = bk.default_images()
    with pytest.raises(TvdeployError, match=r"images.iot-flow: trueverit/iot-flow:1.0 is not in"):
        write_bundle(tmp_path / "b.tar", bk.spec_for(images), io.BytesIO(bk.docker_save(images[:2])))
    assert not (tmp_path / "b.tar").exists()
    assert not list(tmp_path.glob(".b.tar.*"))


def test_stream_whose_layer_does_not_match_its_config(tmp_path: Path) -> None:
    img = bk.service_image("cloud")
    data = bk.docker_save([img])
    tampered = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=tampered, mode="w") as dst:
        for info in src:
            fh = src.extractfile(info) if info.isfile() else None
            body = fh.read() if fh else b""
            if info.name.endswith("layer.tar") and b"srv/cloud" in body:
                body = body.replace(b"cloudcloud", b"CLOUDCLOUD", 1)
            dst.addfile(info, io.BytesIO(body) if fh else None)
    with pytest.raises(TvdeployError, match="do not match the image config's diff_ids"):
        write_bundle(tmp_path / "b.tar", bk.spec_for([img]), io.BytesIO(tampered.getvalue()))


def test_not_a_tar_stream(tmp_path: Path) -> None:
    with pytest.raises(TvdeployError, match="not a docker save archive|stream ended early|no manifest.json"):
        write_bundle(tmp_path / "b.tar", bk.spec_for(bk.default_images()), io.BytesIO(b"garbage" * 100))


def test_output_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(TvdeployError, match="folder does not exist"):
        write_bundle(tmp_path / "no" / "b.tar", bk.spec_for(bk.default_images()), io.BytesIO(b""))


def test_output_that_cannot_be_written(tmp_path: Path) -> None:
    # /proc refuses new files even to root: the error names the output, no traceback.
    out = Path("/proc/tvdeploy-test-bundle.tar")
    with pytest.raises(TvdeployError, match=r"^/proc/tvdeploy-test-bundle.tar: cannot write: "):
        write_bundle(out, bk.spec_for(bk.default_images()), io.BytesIO(bk.docker_save(bk.default_images())))
