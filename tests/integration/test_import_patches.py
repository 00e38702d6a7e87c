"""Importing a delta with byte-level patches into a REAL registry (Debian's docker-registry on
loopback, tests/integration/registry_server.py; marked ``server``): the patched layer is rebuilt from the base read back
from the registry and pushed; a base the site lacks, a patch that rebuilds to other bytes (made
against a base the statement does not name) and a decompression bomb are each refused before
anything is pushed."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import pyzstd

from tests import bundlekit as bk
from tests.integration import registry_server as rs
from tests.integration.test_registry_client import _push_all
from tests.unit.test_bundle_patch_delta import NEW_APP, OLD_APP, images, sha
from tests.unit.tls_helpers import make_site
from tvdeploy.bundle.patch import Base, make_patch
from tvdeploy.bundle.writer import Since, write_bundle
from tvdeploy.connectors.registry import Registry
from tvdeploy.errors import RefusedError, VerificationError
from tvdeploy.reporting import NullReporter

pytestmark = [pytest.mark.server, pytest.mark.skipif(not rs.available(), reason="needs Debian's docker-registry")]


@pytest.fixture
def reg(tmp_path: Path):
    with rs.running_registry(tmp_path / "registry") as srv, Registry("127.0.0.1", srv.port, srv.ca) as r:
        yield r


@pytest.fixture
def trust(tmp_path: Path) -> tuple[object, Path]:
    key = bk.make_key("signer")[0]
    return key, bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root")[0]])


def verified(path: Path, trust: tuple[object, Path]):
    from tvdeploy.bundle.chunkbundle import verify_bundle_path

    bk.sign_with(path, trust[0])
    return verify_bundle_path(path, trust[1])


def v1_on_registry(reg: Registry, tmp_path: Path, trust) -> frozenset[str]:
    v1 = tmp_path / "v1.tar"
    write_bundle(v1, bk.spec_for(images(OLD_APP, "1")), io.BytesIO(bk.docker_save(images(OLD_APP, "1"))))
    ver = verified(v1, trust)
    _push_all(reg, ver, make_site(tmp_path / "site1"))
    return frozenset(ver.verified.bundle.blob_digests)


def patched_delta(tmp_path: Path, have: frozenset[str]) -> Path:
    base_file = tmp_path / "base.bin"
    base_file.write_bytes(OLD_APP)
    since = Since(have, {"site": "lab"}, bases={sha(NEW_APP): [(sha(OLD_APP), base_file)]})
    out = tmp_path / "v2.tar"
    imgs = images(NEW_APP, "2")
    write_bundle(out, bk.spec_for(imgs, release="r2", sequence=2), io.BytesIO(bk.docker_save(imgs)), since=since)
    return out


def import_delta(reg: Registry, ver, tmp_path: Path):
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.execute.import_records import JournalFile
    from tvdeploy.execute.import_registry import check_delta_on_registry, push_image, read_back
    from tvdeploy.release import import_state as S

    bf = BundleFile(ver)
    imgs = bf.images()
    work = tmp_path / "rebuilt"
    work.mkdir(exist_ok=True)
    check_delta_on_registry(reg, imgs, bf.shipped, str(bf.bundle.path), bf, work)
    assert set(bf.rebuilt) == set(bf.patches)  # rebuilt and checked before any push
    site = make_site(tmp_path / "site2")
    jfile = JournalFile(site)
    journal = S.Journal(bf.bundle.manifest_sha256, "r2", 2, "site-registry")
    jfile.start(journal)
    with bf.open() as fh:
        for img in imgs:
            push_image(reg, bf, fh, img, imgs, {}, journal, jfile, NullReporter())
    read_back(reg, imgs)
    from tvdeploy.execute.import_patches import drop_rebuilt

    drop_rebuilt(bf)
    assert list(work.iterdir()) == []
    return imgs


def test_patched_layer_is_rebuilt_from_the_registry_and_pushed(reg, tmp_path: Path, trust) -> None:
    have = v1_on_registry(reg, tmp_path, trust)
    ver = verified(patched_delta(tmp_path, have), trust)
    assert ver.verified.bundle.patches
    assert not reg.blob_exists("trueverit/cloud", f"sha256:{sha(NEW_APP)}")
    imgs = import_delta(reg, ver, tmp_path)
    got = b"".join(reg.get_blob("trueverit/cloud", f"sha256:{sha(NEW_APP)}", len(NEW_APP)))
    assert got == NEW_APP
    cloud = next(i for i in imgs if i.service == "cloud")
    assert reg.manifest_digest("trueverit/cloud", "2") == cloud.digest


def test_compressed_patched_delta_imports_the_same(reg, tmp_path: Path, trust) -> None:
    from tvdeploy.bundle.chunkbundle import verify_bundle_path
    from tvdeploy.bundle.compress import compress_file

    have = v1_on_registry(reg, tmp_path, trust)
    plain = patched_delta(tmp_path, have)
    bk.sign_with(plain, trust[0])
    packed = compress_file(plain, tmp_path / "v2.tar.zst").path
    ver = verify_bundle_path(packed, trust[1])
    assert ver.verified.bundle.compressed
    import_delta(reg, ver, tmp_path)
    assert reg.blob_exists("trueverit/cloud", f"sha256:{sha(NEW_APP)}")


def test_missing_base_is_refused_naming_it_before_any_push(reg, tmp_path: Path, trust) -> None:
    have = v1_on_registry(reg, tmp_path, trust) | {sha(OLD_APP)}
    # A registry that never received the base: a fresh repository layout (other registry dir).
    with rs.running_registry(tmp_path / "other") as srv, Registry("127.0.0.1", srv.port, srv.ca) as empty:
        ver = verified(patched_delta(tmp_path, have), trust)
        with pytest.raises(RefusedError) as err:
            import_delta(empty, ver, tmp_path)
        assert f"sha256:{sha(OLD_APP)} (used by cloud)" in err.value.message
        assert "\n" not in err.value.message
        assert empty.catalog() == []


def forge_patch(src: Path, dst: Path, patch: bytes) -> Path:
    """*src* with its one patch blob replaced by *patch* (manifest.json updated to match): a
    bundle that reads and can be signed, whose patch is not the one the build made."""
    new_hex = hashlib.sha256(patch).hexdigest()
    doc = json.loads(next(d for i, d in bk.members(src) if i.name == "manifest.json"))
    old_name = f"blobs/sha256/{doc['patches'][0]['patch'].removeprefix('sha256:')}"
    doc["files"].pop(old_name)
    doc["files"][f"blobs/sha256/{new_hex}"] = {"size": len(patch), "sha256": new_hex}
    doc["patches"][0]["patch"] = f"sha256:{new_hex}"
    out = []
    for info, data in bk.members(src):
        if info.name == "manifest.json":
            data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        elif info.name == old_name:
            info, data = tarfile.TarInfo(f"blobs/sha256/{new_hex}"), patch
        out.append((info, data))
    return bk.write_members(dst, out)


@pytest.mark.parametrize("kind", ["other-base", "bomb"])
def test_bad_patch_is_refused_before_any_push(reg, tmp_path: Path, trust, kind: str) -> None:
    have = v1_on_registry(reg, tmp_path, trust)
    good = patched_delta(tmp_path, have)
    if kind == "other-base":  # made against a base the signed statement does not name
        other = bytearray(NEW_APP)  # holds the new module the real base lacks
        other[:4096] = bytes(4096)
        made = make_patch(Base.from_verified(sha(bytes(other)), bytes(other)), [NEW_APP], len(NEW_APP))
        assert made is not None
        patch, message = made.patch, "rebuilds to sha256:"
    else:
        patch, message = pyzstd.compress(b"\0" * (len(NEW_APP) * 4)), "decompression bomb"
    bad = forge_patch(good, tmp_path / "bad.tar", patch)
    ver = verified(bad, trust)
    with pytest.raises(VerificationError) as err:
        import_delta(reg, ver, tmp_path)
    assert message in err.value.message and str(bad) in err.value.message
    assert "\n" not in err.value.message
    assert not reg.blob_exists("trueverit/cloud", f"sha256:{sha(NEW_APP)}")
    assert reg.manifest_digest("trueverit/cloud", "2") is None
    assert list((tmp_path / "rebuilt").iterdir()) == []  # no partial rebuild left behind


def test_compressed_delta_split_into_chunks_imports(reg, tmp_path: Path, trust) -> None:
    from tvdeploy.bundle.chunkbundle import verify_bundle_path
    from tvdeploy.bundle.chunksplit import split_bundle
    from tvdeploy.bundle.compress import compress_file
    from tvdeploy.keys.store import key_id

    have = v1_on_registry(reg, tmp_path, trust)
    plain = patched_delta(tmp_path, have)
    bk.sign_with(plain, trust[0])
    packed = compress_file(plain, tmp_path / "v2.tar.zst").path
    media = tmp_path / "media"
    split_bundle(packed, 64 * 1024, media, [(trust[0], key_id(trust[0].public_key()))])
    ver = verify_bundle_path(media, trust[1])
    assert ver.chunks is not None and ver.verified.bundle.compressed
    import_delta(reg, ver, tmp_path)
    assert b"".join(reg.get_blob("trueverit/cloud", f"sha256:{sha(NEW_APP)}", len(NEW_APP))) == NEW_APP
