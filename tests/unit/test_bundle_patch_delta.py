"""Deltas with byte-level patches (issue 18), from synthetic ``docker save`` streams: the changed
layer is shipped as a patch against the site's previous layer when that is smaller; manifest.json
and the signed statement name base, patch, result digest and size; the strict reader refuses every
malformed or inconsistent patch list; old bundles read and sign as before."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests import bundlekit as bk
from tests.unit.test_bundle_delta import refused, rewrite
from tvdeploy.bundle import statement
from tvdeploy.bundle.delta import missing_base_blobs, patched_bytes, shipped_bytes
from tvdeploy.bundle.inspect import inspect_bundle
from tvdeploy.bundle.patch import Base, apply_patch
from tvdeploy.bundle.reader import read_bundle
from tvdeploy.bundle.verify import verify_bundle
from tvdeploy.bundle.writer import Since, write_bundle

MODULES = {f"app/lib/m{i}.bin": random.Random(f"m{i}").randbytes(256 * 1024) for i in range(8)}
OLD_APP = bk.layer_tar(MODULES)
NEW_APP = bk.layer_tar({**MODULES, "app/lib/m3.bin": random.Random("fix").randbytes(256 * 1024)})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def images(app: bytes, version: str) -> list[bk.FakeImage]:
    cloud = bk.FakeImage(f"trueverit/cloud:{version}", [bk.BASE_LAYER, app],
                         labels={"org.opencontainers.image.title": "cloud"})
    return [cloud, bk.service_image("edge")]


def build(path: Path, imgs: list[bk.FakeImage], since: Since | None, **kw: Any) -> Path:
    write_bundle(path, bk.spec_for(imgs, **kw), io.BytesIO(bk.docker_save(imgs)), since=since)
    return path


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    return build(tmp_path / "v1.tar", images(OLD_APP, "1"), None)


def have_of(bundle: Path) -> frozenset[str]:
    return frozenset(read_bundle(bundle).blob_digests)


@pytest.fixture
def patched(tmp_path: Path, v1: Path) -> Path:
    base_file = tmp_path / "base.bin"
    base_file.write_bytes(OLD_APP)
    since = Since(have_of(v1), {"site": "lab"}, bases={sha(NEW_APP): [(sha(OLD_APP), base_file)]})
    return build(tmp_path / "v2.tar", images(NEW_APP, "2"), since, release="r2", sequence=2)


def test_changed_layer_ships_as_a_small_patch(patched: Path, v1: Path, tmp_path: Path) -> None:
    d = read_bundle(patched)
    assert d.is_delta and set(d.patches) == {sha(NEW_APP)}
    p = d.patches[sha(NEW_APP)]
    assert (p.base, p.size) == (sha(OLD_APP), len(NEW_APP))
    assert p.patch in d.blob_digests and sha(NEW_APP) not in d.blob_digests and sha(NEW_APP) not in d.expected
    patch_size = d.files[f"blobs/sha256/{p.patch}"].size
    assert patch_size < 2 * 256 * 1024 + 4096  # about the changed file, not the 2 MiB layer
    assert patched_bytes(d) == len(NEW_APP)
    assert shipped_bytes(d) < len(NEW_APP)
    layer_level = build(tmp_path / "layers.tar", images(NEW_APP, "2"), Since(have_of(v1), {}), release="r2",
                        sequence=2)
    assert patched.stat().st_size + len(NEW_APP) - 2 * 256 * 1024 < layer_level.stat().st_size
    # The patch rebuilds the exact layer from the base.
    with open(patched, "rb") as fh:
        fh.seek(d.data_offsets[f"blobs/sha256/{p.patch}"])
        patch = fh.read(patch_size)
    base = Base.load(sha(OLD_APP), [OLD_APP], len(OLD_APP))
    assert b"".join(apply_patch(base, [patch], p.digest, p.size)) == NEW_APP


def test_manifest_and_statement_name_base_patch_digest_and_size(patched: Path) -> None:
    d = read_bundle(patched)
    p = d.patches[sha(NEW_APP)]
    entry = {"digest": f"sha256:{sha(NEW_APP)}", "size": len(NEW_APP), "base": f"sha256:{sha(OLD_APP)}",
             "patch": f"sha256:{p.patch}"}
    assert d.docs["manifest.json"]["patches"] == [entry]
    doc = statement.for_bundle(d)
    assert doc["predicate"]["patches"] == [entry]
    assert {"name": f"blobs/sha256/{p.patch}", "digest": {"sha256": p.patch}} in doc["subject"]


def test_old_bundles_and_unpatched_deltas_have_the_same_statement_as_before(v1: Path, tmp_path: Path) -> None:
    plain = read_bundle(v1)
    assert "patches" not in statement.for_bundle(plain)["predicate"]
    delta = read_bundle(build(tmp_path / "d.tar", images(NEW_APP, "2"), Since(have_of(v1), {}), sequence=2))
    assert delta.patches == {} and "patches" not in delta.docs["manifest.json"]
    assert "patches" not in statement.for_bundle(delta)["predicate"]


def test_the_base_closest_by_content_wins(tmp_path: Path, v1: Path) -> None:
    unrelated = tmp_path / "unrelated.bin"
    unrelated.write_bytes(random.Random("y").randbytes(len(OLD_APP)))
    good = tmp_path / "good.bin"
    good.write_bytes(OLD_APP)
    bases = [(sha(unrelated.read_bytes()), unrelated), (sha(OLD_APP), good)]  # the poor guess first
    d = read_bundle(build(tmp_path / "v2.tar", images(NEW_APP, "2"), Since(have_of(v1), {},
                                                                           bases={sha(NEW_APP): bases}), sequence=2))
    assert d.patches[sha(NEW_APP)].base == sha(OLD_APP)


def test_no_patch_when_the_base_does_not_help(tmp_path: Path, v1: Path) -> None:
    unrelated = tmp_path / "unrelated.bin"
    unrelated.write_bytes(random.Random("x").randbytes(len(OLD_APP)))
    since = Since(have_of(v1), {}, bases={sha(NEW_APP): [(sha(unrelated.read_bytes()), unrelated)]})
    d = read_bundle(build(tmp_path / "v2.tar", images(NEW_APP, "2"), since, sequence=2))
    assert d.patches == {} and sha(NEW_APP) in d.blob_digests


def test_signed_patched_delta_verifies(tmp_path: Path, patched: Path) -> None:
    key, _kid = bk.make_key("signer-1")
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-1")[0]])
    bk.sign_with(patched, key)
    assert len(verify_bundle(patched, root).signers) == 1


def test_missing_base_names_the_patch_base(patched: Path, v1: Path) -> None:
    d = read_bundle(patched)
    site = [f"sha256:{h}" for h in have_of(v1)]
    assert missing_base_blobs(d, site) == []
    assert missing_base_blobs(d, [x for x in site if x != f"sha256:{sha(OLD_APP)}"]) == [f"sha256:{sha(OLD_APP)}"]


def test_inspect_shows_shipped_patched_and_expected_bytes(patched: Path) -> None:
    doc = inspect_bundle(patched)
    cloud = doc["images"]["cloud"]
    d = read_bundle(patched)
    p = d.patches[sha(NEW_APP)]
    assert cloud["patched_bytes"] == len(NEW_APP)
    assert cloud["expected_bytes"] == len(bk.BASE_LAYER)
    config = next(img for img in images(NEW_APP, "2") if img.tag.startswith("trueverit/cloud")).config()
    assert cloud["shipped_bytes"] == len(config) + d.files[f"blobs/sha256/{p.patch}"].size
    assert doc["patched"] == {"layers": 1, "bytes": len(NEW_APP)}
    assert doc["images"]["edge"]["patched_bytes"] == 0


# ---- hostile patch lists: one line naming the file and what is wrong -----------------------------

def _patch_hex(path: Path) -> str:
    return read_bundle(path).patches[sha(NEW_APP)].patch


@pytest.mark.parametrize(("change", "message"), [
    (lambda d, h: d.update(patches={}), "patches: expected a list of"),
    (lambda d, h: d["patches"][0].pop("base"), "expected {digest, size, base, patch}"),
    (lambda d, h: d["patches"][0].update(extra=1), "expected {digest, size, base, patch}"),
    (lambda d, h: d["patches"][0].update(base="sha256:xyz"), "patches[0].base: not a sha256 digest"),
    (lambda d, h: d["patches"][0].update(size=-1), "size: expected an integer from 0 to"),
    (lambda d, h: d["patches"][0].update(size=1 << 40), "size: expected an integer from 0 to"),
    (lambda d, h: d["patches"][0].update(size=5), "differs from blob"),
    (lambda d, h: d["patches"].append(dict(d["patches"][0])), "listed twice"),
    (lambda d, h: d["patches"][0].update(patch=f"sha256:{'b' * 64}"), "is not in the bundle"),
    (lambda d, h: d["patches"][0].update(base=f"sha256:{h['patch']}"), "must be a layer the site holds"),
    (lambda d, h: d["patches"][0].update(base=d["patches"][0]["digest"]), "must be a layer the site holds"),
    (lambda d, h: d["patches"].append({"digest": f"sha256:{'c' * 64}", "size": 3, "base": d["patches"][0]["digest"],
                                       "patch": f"sha256:{h['patch']}"}), "is itself rebuilt from a patch"),
    (lambda d, h: d["patches"].append({"digest": f"sha256:{'d' * 64}", "size": 3, "base": f"sha256:{'e' * 64}",
                                       "patch": f"sha256:{h['patch']}"}), "is not a layer of any image"),
    (lambda d, h: d["expected_on_site"].append({"digest": d["patches"][0]["digest"], "size": len(NEW_APP)}),
     "also shipped or expected on site"),
    (lambda d, h: (d.pop("expected_on_site"), d.pop("since")), "patches in a bundle that is not a delta"),
])
def test_malformed_patch_lists_are_refused(tmp_path: Path, patched: Path, change: Any, message: str) -> None:
    hexes = {"patch": _patch_hex(patched)}
    bad = rewrite(patched, tmp_path / "bad.tar", manifest=lambda d: change(d, hexes))
    msg = refused(bad)
    assert msg.startswith(f"{bad}: ") and message in msg, msg


def test_patch_list_changed_after_signing_no_longer_verifies(tmp_path: Path, patched: Path) -> None:
    key, _kid = bk.make_key("signer-2")
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-2")[0]])
    bk.sign_with(patched, key)
    other = f"sha256:{'f' * 64}"
    bad = rewrite(patched, tmp_path / "bad.tar", manifest=lambda d: d["patches"][0].update(base=other))
    from tvdeploy.errors import VerificationError

    with pytest.raises(VerificationError, match="signed by 0 of the 1"):
        verify_bundle(bad, root)


def test_patched_layer_dropped_from_the_list_is_a_missing_blob(tmp_path: Path, patched: Path) -> None:
    bad = rewrite(patched, tmp_path / "bad.tar", manifest=lambda d: d.pop("patches"))
    assert "missing blob" in refused(bad)


def test_manifest_json_patches_are_sorted_and_compact(patched: Path) -> None:
    raw = next(data for info, data in bk.members(patched) if info.name == "manifest.json")
    assert json.loads(raw)["patches"][0]["digest"] == f"sha256:{sha(NEW_APP)}"


# ---- which base: the same repository's held layer at the same position ---------------------------

def hint(ref: str, *layers: str) -> Any:
    from tvdeploy.bundle.savestream import ImageHint

    return ImageHint(ref, "0" * 64, tuple(f"sha256:{x * 64}" for x in layers), 0)


def test_choose_bases_same_repository_same_position() -> None:
    from tvdeploy.bundle.patchbase import Choice, choose_bases, repository

    assert repository("10.0.0.1:5000/trueverit/cloud:2") == "10.0.0.1:5000/trueverit/cloud"
    assert repository("trueverit/cloud") == "trueverit/cloud"
    have = frozenset({"a" * 64, "b" * 64, "c" * 64, "e" * 64})
    new = [hint("trueverit/cloud:2", "a", "d"), hint("trueverit/edge:2", "a", "f")]
    candidates = [hint("trueverit/cloud:1", "a", "b"), hint("trueverit/cloud:0", "a", "c"),
                  hint("trueverit/other:1", "a", "e")]
    got = choose_bases(new, candidates, have)
    # edge has no same-repo candidate; cloud:1 and cloud:0 tie (one shared layer): later tag first
    assert got == {"d" * 64: [Choice("b" * 64, "trueverit/cloud:1"), Choice("c" * 64, "trueverit/cloud:0"),
                              Choice("a" * 64, "trueverit/cloud:1")]}
    assert choose_bases(new, candidates, have, limit=1) == {"d" * 64: [Choice("b" * 64, "trueverit/cloud:1")]}


def test_choose_bases_skips_layers_the_site_lacks_and_looks_nearby() -> None:
    from tvdeploy.bundle.patchbase import Choice, choose_bases

    have = frozenset({"a" * 64, "c" * 64})
    new = [hint("trueverit/cloud:3", "a", "x", "y")]
    candidates = [hint("trueverit/cloud:2", "a", "b", "c")]  # b is not on the site
    got = choose_bases(new, candidates, have)
    assert got["y" * 64] == [Choice("c" * 64, "trueverit/cloud:2"), Choice("a" * 64, "trueverit/cloud:2")]
    assert got["x" * 64][0] == Choice("c" * 64, "trueverit/cloud:2")  # nearest held layer, upper first
