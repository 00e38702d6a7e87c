"""The docker-load archive assembled from OCI blobs: members, order, dedup, exact length."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.dockerload import LoadImage, archive_size, stream


def _load_images(images: list[bk.FakeImage]) -> tuple[list[LoadImage], dict[str, bytes]]:
    blobs: dict[str, bytes] = {}
    out = []
    for img in images:
        layers = []
        for layer in img.layers:
            h = hashlib.sha256(layer).hexdigest()
            blobs[h] = layer
            layers.append((h, len(layer)))
        out.append(LoadImage(img.tag, img.config_hex, img.config(), tuple(layers)))
    return out, blobs


def _reader(blobs: dict[str, bytes], piece: int = 1000):
    def read(hexd: str, size: int) -> Iterator[bytes]:
        data = blobs[hexd]
        assert len(data) == size
        for i in range(0, len(data), piece):
            yield data[i:i + piece]
    return read


def test_archive_is_what_docker_load_reads() -> None:
    images = bk.default_images()
    loads, blobs = _load_images(images)
    data = b"".join(stream(loads, _reader(blobs)))
    assert len(data) == archive_size(loads)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        for entry, img in zip(manifest, images, strict=True):
            assert entry["RepoTags"] == [img.tag]
            config = tar.extractfile(entry["Config"]).read()
            # the image id docker computes is the sha256 of the config: the bundle's config digest
            assert hashlib.sha256(config).hexdigest() == img.config_hex
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
            for path, diff in zip(entry["Layers"], diff_ids, strict=True):
                assert "sha256:" + hashlib.sha256(tar.extractfile(path).read()).hexdigest() == diff
    # the shared base layer is in the archive once
    base = hashlib.sha256(bk.BASE_LAYER).hexdigest()
    assert names.count(f"{base}/layer.tar") == 1


def test_same_images_same_bytes() -> None:
    loads, blobs = _load_images(bk.default_images())
    assert b"".join(stream(loads, _reader(blobs))) == b"".join(stream(loads, _reader(blobs, 7)))


def test_large_layer_size_gets_a_pax_header() -> None:
    big = LoadImage("t/big:1", "c" * 64, b"{}", (("d" * 64, 9 * 1024**3),))
    # no bytes read: the length is computed from the headers alone
    assert archive_size([big]) > 9 * 1024**3


def test_short_layer_is_an_error_not_a_corrupt_archive() -> None:
    loads, blobs = _load_images([bk.service_image("cloud")])
    short = {h: d[:-10] for h, d in blobs.items()}

    def read(hexd: str, _size: int) -> Iterator[bytes]:
        yield short[hexd]

    with pytest.raises(ValueError, match="bytes"):
        b"".join(stream(loads, read))


def test_layers_absent_from_a_delta_are_listed_but_not_sent() -> None:
    loads, blobs = _load_images(bk.default_images())
    base = hashlib.sha256(bk.BASE_LAYER).hexdigest()
    absent = frozenset({base})
    data = b"".join(stream(loads, _reader(blobs), absent))
    assert len(data) == archive_size(loads, absent)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        assert f"{base}/layer.tar" not in tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert all(entry["Layers"][0] == f"{base}/layer.tar" for entry in manifest)
