"""The registry client and the push/resume part of `bundle import` against a REAL registry:
Debian's docker-registry on loopback with a test CA (tests/integration/registry_server.py); marked
``server``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tests.integration import registry_server as rs
from tests.unit.tls_helpers import make_site
from tvdeploy.connectors.registry import Registry, RegistryError
from tvdeploy.errors import VerificationError
from tvdeploy.reporting import NullReporter

pytestmark = [pytest.mark.server, pytest.mark.skipif(not rs.available(), reason="needs Debian's docker-registry")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with rs.running_registry(tmp_path_factory.mktemp("registry")) as srv:
        yield srv


@pytest.fixture
def reg(server: rs.RegistryServer):
    with Registry("127.0.0.1", server.port, server.ca, upload_chunk=4096) as r:
        yield r


def _push(reg: Registry, repo: str, data: bytes) -> str:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    reg.upload_blob(repo, digest, io.BytesIO(data), 0, len(data))
    return digest


def test_monolithic_and_chunked_uploads_and_head(reg: Registry) -> None:
    small = b"small blob" * 10
    large = bytes(range(256)) * 60  # 15360 bytes: four PATCH chunks of 4096
    d1, d2 = _push(reg, "t/blobs", small), _push(reg, "t/blobs", large)
    assert reg.blob_exists("t/blobs", d1) and reg.blob_exists("t/blobs", d2)
    assert not reg.blob_exists("t/blobs", "sha256:" + "0" * 64)
    # A blob from another repository is linked by a mount: no bytes move.
    assert reg.mount_blob("t/other", d2, "t/blobs") is None
    assert reg.blob_exists("t/other", d2)


def test_upload_from_offset_streams_only_that_slice(reg: Registry) -> None:
    data = b"HEADER--" + b"payload" * 100 + b"--TRAILER"
    payload = b"payload" * 100
    digest = f"sha256:{hashlib.sha256(payload).hexdigest()}"
    seen: list[int] = []
    reg.upload_blob("t/slice", digest, io.BytesIO(data), 8, len(payload), progress=seen.append)
    assert sum(seen) == len(payload) and reg.blob_exists("t/slice", digest)


def test_bytes_that_do_not_match_the_digest_are_refused(reg: Registry) -> None:
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    with pytest.raises(RegistryError, match=r"HTTP 400 DIGEST_INVALID"):
        reg.upload_blob("t/bad", wrong, io.BytesIO(b"content"), 0, 7)
    assert not reg.blob_exists("t/bad", wrong)


def test_manifests_catalog_tags(reg: Registry) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = bk.layer_tar({"a": b"x"})
    cd, ld = _push(reg, "t/img", config), _push(reg, "t/img", layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                                       "size": len(layer)}]}).encode()
    digest = reg.put_manifest("t/img", "1", manifest)
    assert digest == f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    data, got, media = reg.get_manifest("t/img", digest)
    assert data == manifest and got == digest and media.startswith("application/vnd.oci.image.manifest")
    assert reg.manifest_digest("t/img", "1") == digest
    assert reg.manifest_digest("t/img", "nope") is None
    assert "t/img" in reg.catalog() and reg.tags("t/img") == ["1"]


def test_manifest_with_unknown_blob_is_refused(reg: Registry) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + "1" * 64, "size": 3}, "layers": []}).encode()
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        reg.put_manifest("t/ghost", "1", manifest)


def test_only_the_site_ca_is_trusted_even_with_ca_env_vars(server: rs.RegistryServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment points requests at the server's own CA: it must not win over ours.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(server.ca))
    other_ca, _c, _k = rs.make_ca_and_cert(tmp_path / "other")
    with Registry("127.0.0.1", server.port, other_ca) as r, pytest.raises(RegistryError) as err:
        r.ping()
    assert err.value.message.startswith(f"registry 127.0.0.1:{server.port}: TLS verification against the site CA")
    assert "\n" not in err.value.message


def test_unreachable_registry_is_one_line(tmp_path: Path, server: rs.RegistryServer) -> None:
    with Registry("127.0.0.1", rs._free_port(), server.ca, timeout=2) as r, pytest.raises(RegistryError) as err:
        r.ping()
    assert "unreachable" in err.value.message


def test_missing_ca_file(tmp_path: Path) -> None:
    from tvdeploy.errors import InputFileError

    with pytest.raises(InputFileError, match="site CA certificate not found"):
        Registry("127.0.0.1", 5000, tmp_path / "ca.pem")


@pytest.mark.parametrize("repo", ["UPPER/case", "../etc", "a//b", "a/b/"])
def test_hostile_repository_names_are_refused_before_any_request(reg: Registry, repo: str) -> None:
    with pytest.raises(VerificationError, match="not a valid repository name"):
        reg.blob_exists(repo, "sha256:" + "0" * 64)


# -- the push half of `bundle import`, on a real bundle and the real registry --------------------

@pytest.fixture
def verified_bundle(tmp_path: Path):
    from tvdeploy.bundle.chunkbundle import verify_bundle_path

    images = [bk.service_image("cloud", 30000), bk.service_image("edge", 20000), bk.service_image("iot-flow", 9000)]
    bundle = bk.make_bundle(tmp_path / "b.tar", images)
    keys = [bk.make_key(f"s{i}")[0] for i in (1, 2)]
    trust = bk.make_trust(tmp_path / "root.json", keys, 2, [bk.make_key("root")[0]])
    for k in keys:
        bk.sign_with(bundle, k)
    return verify_bundle_path(bundle, trust)


def _push_all(reg, verified, site, fail_after: int | None = None):
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.execute.import_records import JournalFile
    from tvdeploy.execute.import_registry import push_image
    from tvdeploy.release import import_state as S

    bf = BundleFile(verified)
    images = bf.images()
    jfile = JournalFile(site)
    journal = jfile.load() or S.Journal(bf.bundle.manifest_sha256, "r", 1, "site-registry")
    if not jfile.path.exists():
        jfile.start(journal)
    moved = skipped = 0
    with bf.open() as fh:
        for n, img in enumerate(images):
            if fail_after is not None and n == fail_after:
                raise KeyboardInterrupt("killed half-way")
            stats = push_image(reg, bf, fh, img, images, {}, journal, jfile, NullReporter())
            moved += stats.moved
            skipped += stats.skipped
    return images, moved, skipped, jfile


def test_push_is_resumable_and_moves_only_what_is_missing(reg, verified_bundle, tmp_path: Path) -> None:
    from tvdeploy.execute.import_registry import read_back

    site = make_site(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _push_all(reg, verified_bundle, site, fail_after=1)
    images, moved, skipped, jfile = _push_all(reg, verified_bundle, site)
    first = images[0]
    # the first image (and the base layer every image shares) went up before the kill
    assert skipped >= first.size
    assert moved == sum(s for img in images[1:] for h, s in img.blobs if h not in {x for x, _ in first.blobs})
    journal = jfile.load()
    assert journal is not None and set(journal.images) == {i.service for i in images}
    read_back(reg, images)
    # A third run moves nothing at all.
    _images, moved, skipped, _j = _push_all(reg, verified_bundle, site)
    assert moved == 0 and skipped == sum(i.size for i in images)


def test_registry_inventory_lists_every_blob_of_every_tagged_image(reg, verified_bundle, tmp_path: Path) -> None:
    from tvdeploy.release.site_inventory import registry_blobs

    images, _moved, _skipped, _j = _push_all(reg, verified_bundle, make_site(tmp_path))
    held = registry_blobs(reg)
    for img in images:
        assert img.digest in held
        assert {f"sha256:{h}" for h, _s in img.blobs} <= held


def test_delta_is_refused_when_its_base_blobs_are_missing(reg, verified_bundle, tmp_path: Path) -> None:
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.errors import RefusedError
    from tvdeploy.execute.import_registry import check_delta_on_registry

    images, _m, _s, _j = _push_all(reg, verified_bundle, make_site(tmp_path))
    everything = BundleFile(verified_bundle).shipped
    base = images[0].layers[0][0]
    # A delta that does not ship the shared base layer: the registry has it, accepted.
    check_delta_on_registry(reg, images, everything - {base}, "delta.tar")
    # A delta expecting a blob the site never received: refused with the list, nothing pushed.
    import dataclasses

    ghost = "f" * 64
    changed = [dataclasses.replace(images[1], layers=(*images[1].layers, (ghost, 10)))]
    with pytest.raises(RefusedError) as err:
        check_delta_on_registry(reg, changed, everything, "delta.tar")
    assert err.value.message == ("delta bundle: 1 base blob(s) it expects are not on this site: "
                                 f"sha256:{ghost} (used by {images[1].service})")
