"""Deltas from synthetic ``docker save`` streams (tests/bundlekit.py): only the layers the site
lacks are shipped, every manifest and config is; the reader accepts a layer that is expected on
site and refuses one that is neither shipped nor expected; the signature covers the expected
layers. The site inventories here are hand-made with ``make_inventory`` (no site runs in unit
tests); tests/integration/test_bundle_delta_lab.py builds one from a real bundle of the lab."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle import statement
from tvdeploy.bundle.delta import missing_base_blobs, since
from tvdeploy.bundle.inventory import make_inventory, read_inventory
from tvdeploy.bundle.reader import BundleError, read_bundle
from tvdeploy.bundle.verify import verify_bundle
from tvdeploy.bundle.writer import Since, write_bundle

HOTFIX_LAYER = bk.layer_tar({"srv/cloud": b"cloud hot-fix 2.0.1\n" * 40})


def v1_images() -> list[bk.FakeImage]:
    return [bk.service_image(s) for s in bk.SERVICES]


def hotfix_images() -> list[bk.FakeImage]:
    """Version 1 of every service but cloud, whose top layer changed."""
    images = v1_images()
    images[0] = bk.FakeImage("trueverit/cloud:2.0", [bk.BASE_LAYER, HOTFIX_LAYER],
                             labels={"org.opencontainers.image.title": "cloud"})
    return images


def digests_of(bundle: Path) -> list[str]:
    return [f"sha256:{h}" for h in read_bundle(bundle).blob_digests]


def build(path: Path, images: list[bk.FakeImage], have: list[str] | None, **kw: Any) -> Path:
    spec = bk.spec_for(images, **kw)
    delta = None if have is None else Since(frozenset(d.removeprefix("sha256:") for d in have), {"site": "lab"})
    write_bundle(path, spec, io.BytesIO(bk.docker_save(images)), since=delta)
    return path


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    return build(tmp_path / "v1.tar", v1_images(), None)


@pytest.fixture
def delta(tmp_path: Path, v1: Path) -> Path:
    return build(tmp_path / "v2-delta.tar", hotfix_images(), digests_of(v1), release="2026.11-2", sequence=2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_delta_ships_only_the_changed_layer_and_all_metadata(v1: Path, delta: Path) -> None:
    full = read_bundle(v1)
    d = read_bundle(delta)
    assert d.is_delta and not full.is_delta
    shipped_layers = {h for h in d.blob_digests if h in {sha(lay) for img in hotfix_images() for lay in img.layers}}
    assert shipped_layers == {sha(HOTFIX_LAYER)}
    # Every config and manifest of the release is shipped, even those of unchanged images.
    for img in hotfix_images():
        assert img.config_hex in d.blob_digests
    for svc, img in d.release["images"].items():
        assert img["digest"].removeprefix("sha256:") in d.blob_digests, svc
    # Expected on site: exactly the unchanged layers, with their sizes.
    unchanged = {sha(lay): len(lay) for img in hotfix_images() for lay in img.layers if lay != HOTFIX_LAYER}
    assert len(unchanged) == 3 and d.expected == unchanged
    assert json.loads(_member(delta, "manifest.json"))["expected_on_site"] == [
        {"digest": f"sha256:{h}", "size": n} for h, n in sorted(unchanged.items())]
    assert d.since == {"site": "lab"}
    assert delta.stat().st_size < v1.stat().st_size


def test_delta_against_an_empty_inventory_ships_everything(tmp_path: Path) -> None:
    d = read_bundle(build(tmp_path / "d.tar", v1_images(), []))
    assert d.is_delta and d.expected == {}
    assert d.blob_digests == read_bundle(build(tmp_path / "f.tar", v1_images(), None)).blob_digests


def test_configs_on_site_are_still_shipped(tmp_path: Path, v1: Path) -> None:
    # The inventory lists every v1 blob, configs included: an unchanged release still carries them.
    d = read_bundle(build(tmp_path / "same.tar", v1_images(), digests_of(v1)))
    assert {img.config_hex for img in v1_images()} <= set(d.blob_digests)
    assert not {sha(lay) for img in v1_images() for lay in img.layers} & set(d.blob_digests)


def test_verify_a_signed_delta(tmp_path: Path, delta: Path) -> None:
    key, _kid = bk.make_key("signer-1")
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-1")[0]])
    bk.sign_with(delta, key)
    verified = verify_bundle(delta, root)
    assert verified.bundle.is_delta and len(verified.signers) == 1


def test_statement_of_a_delta_names_the_expected_layers(delta: Path, v1: Path) -> None:
    d = read_bundle(delta)
    doc = statement.for_bundle(d)
    assert doc["predicate"]["expected_on_site"] == [{"digest": f"sha256:{h}", "size": n}
                                                    for h, n in sorted(d.expected.items())]
    assert "expected_on_site" not in statement.for_bundle(read_bundle(v1))["predicate"]


def test_missing_base_blobs(tmp_path: Path, v1: Path, delta: Path) -> None:
    d = read_bundle(delta)
    assert missing_base_blobs(d, digests_of(v1)) == []
    # A hand-made inventory (no site here) of a site that lost the base layer.
    base = f"sha256:{sha(bk.BASE_LAYER)}"
    key, kid = bk.make_key("operator-x")
    lacking = [x for x in digests_of(v1) if x != base]
    have = tmp_path / "HAVE.json"
    have.write_bytes(make_inventory("lab", lacking, None, (key, kid)))
    inv = read_inventory(have, [key.public_key()])
    assert missing_base_blobs(d, inv.digests) == [base]
    assert missing_base_blobs(d, [h.removeprefix("sha256:") for h in lacking]) == [base]  # bare hex too
    assert missing_base_blobs(read_bundle(v1), []) == []  # a full bundle needs nothing


def test_since_from_an_inventory(tmp_path: Path, v1: Path) -> None:
    key, kid = bk.make_key("operator-y")
    have = tmp_path / "HAVE.json"
    have.write_bytes(make_inventory("plant-7", digests_of(v1), {"release": "2026.11-1", "sequence": 1},
                                    (key, kid)))
    base = since(read_inventory(have, [key.public_key()]))
    assert base.have == frozenset(read_bundle(v1).blob_digests)
    assert base.about["site"] == "plant-7" and base.about["release"] == "2026.11-1"


# ---- hostile deltas: each refused with one line naming the file and what is wrong ----------

def _member(path: Path, name: str) -> bytes:
    return next(data for info, data in bk.members(path) if info.name == name)


def rewrite(src: Path, dst: Path, drop: set[str] | None = None, manifest: Any = None) -> Path:
    """*src* with members *drop* removed (and unlisted) and manifest.json changed by *manifest*."""
    drop = drop or set()
    items = []
    for info, data in bk.members(src):
        if info.name in drop:
            continue
        if info.name == "manifest.json":
            doc = json.loads(data)
            for name in drop:
                doc["files"].pop(name, None)
            if manifest is not None:
                manifest(doc)
            data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        items.append((info, data))
    return bk.write_members(dst, items)


def refused(path: Path) -> str:
    with pytest.raises(BundleError) as err:
        read_bundle(path)
    assert "\n" not in err.value.message
    return err.value.message


def test_blob_neither_shipped_nor_expected_is_refused(tmp_path: Path, delta: Path) -> None:
    base = f"sha256:{sha(bk.BASE_LAYER)}"

    def forget_base(doc: dict[str, Any]) -> None:
        doc["expected_on_site"] = [e for e in doc["expected_on_site"] if e["digest"] != base]

    bad = rewrite(delta, tmp_path / "bad.tar", manifest=forget_base)
    msg = refused(bad)
    assert msg.startswith(f"{bad}: blobs/sha256/{base[7:]}: missing blob (referenced by image manifest ")
    assert msg.endswith("; not listed as expected on site either")


def test_full_bundle_missing_a_layer_is_still_refused(tmp_path: Path, v1: Path) -> None:
    name = f"blobs/sha256/{sha(bk.BASE_LAYER)}"
    bad = rewrite(v1, tmp_path / "bad.tar", drop={name})
    assert refused(bad).startswith(f"{bad}: {name}: missing blob (referenced by image manifest ")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d, h: d.update(expected_on_site="all"), "manifest.json: expected_on_site: expected a list of"),
    (lambda d, h: d["expected_on_site"].append({"digest": "sha256:zz", "size": 1}),
     "manifest.json: expected_on_site[3]: not a sha256 digest"),
    (lambda d, h: d["expected_on_site"].append(dict(d["expected_on_site"][0])), "listed twice"),
    (lambda d, h: d["expected_on_site"][0].update(size=-1), "size: expected an integer >= 0"),
    (lambda d, h: d["expected_on_site"][0].update(extra=1), "expected {digest, size}"),
    (lambda d, h: d["expected_on_site"][0].update(size=d["expected_on_site"][0]["size"] + 1), "differs from blob"),
    (lambda d, h: d["expected_on_site"].append({"digest": f"sha256:{h['hotfix']}", "size": len(HOTFIX_LAYER)}),
     "is shipped in the bundle too"),
    (lambda d, h: d["expected_on_site"].append({"digest": f"sha256:{'a' * 64}", "size": 5}),
     "is not a layer of any image"),
    (lambda d, h: d.update(since=[1]), "manifest.json: since: expected a mapping"),
])
def test_malformed_expected_on_site(tmp_path: Path, delta: Path, change: Any, message: str) -> None:
    bad = rewrite(delta, tmp_path / "bad.tar", manifest=lambda d: change(d, {"hotfix": sha(HOTFIX_LAYER)}))
    msg = refused(bad)
    assert msg.startswith(f"{bad}: ") and message in msg, msg


def test_config_may_not_be_left_to_the_site(tmp_path: Path, delta: Path) -> None:
    cfg = hotfix_images()[1].config_hex
    name = f"blobs/sha256/{cfg}"
    size = len(hotfix_images()[1].config())

    def expect_config(doc: dict[str, Any]) -> None:
        doc["expected_on_site"].append({"digest": f"sha256:{cfg}", "size": size})

    bad = rewrite(delta, tmp_path / "bad.tar", drop={name}, manifest=expect_config)
    assert refused(bad).startswith(f"{bad}: {name}: missing blob (referenced by image manifest ")


def test_tampering_with_expected_on_site_breaks_the_signature(tmp_path: Path, delta: Path) -> None:
    """A consistent rewrite (the hot-fix layer moved from shipped to expected) passes the
    structure checks: only the signature can tell, and does."""
    key, _kid = bk.make_key("signer-1")
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-1")[0]])
    bk.sign_with(delta, key)
    hot = sha(HOTFIX_LAYER)

    def expect_hotfix(doc: dict[str, Any]) -> None:
        doc["expected_on_site"].append({"digest": f"sha256:{hot}", "size": len(HOTFIX_LAYER)})
        doc["expected_on_site"].sort(key=lambda e: e["digest"])

    bad = rewrite(delta, tmp_path / "bad.tar", drop={f"blobs/sha256/{hot}"}, manifest=expect_hotfix)
    assert read_bundle(bad).expected[hot] == len(HOTFIX_LAYER)  # structurally fine
    from tvdeploy.errors import VerificationError

    with pytest.raises(VerificationError) as err:
        verify_bundle(bad, root)
    assert "signed statement is for other content" in err.value.message


def test_signature_of_a_full_bundle_does_not_fit_a_delta(tmp_path: Path, v1: Path) -> None:
    """Same images, same release: the delta's statement differs (expected layers), so moving a
    signature between the full bundle and a delta of it does not verify."""
    d = read_bundle(build(tmp_path / "d.tar", v1_images(), digests_of(v1)))
    assert statement.for_bundle(d) != statement.for_bundle(read_bundle(v1))


# ---- the paths a layer takes through the save stream -----------------------------------------

@pytest.mark.parametrize("size", [1_500_000, 9 * 1024 * 1024])  # streamed; over the pipeline threshold
def test_large_layer_on_site_is_hashed_not_shipped(tmp_path: Path, size: int) -> None:
    import random

    big = bk.layer_tar({"blob": random.Random(size).randbytes(size)})
    old = [bk.FakeImage("trueverit/big:1", [bk.BASE_LAYER, big])]
    new = [bk.FakeImage("trueverit/big:2", [bk.BASE_LAYER, big, HOTFIX_LAYER])]
    v1 = build(tmp_path / "v1.tar", old, None)
    d = build(tmp_path / "d.tar", new, digests_of(v1), release="r2", sequence=2)
    bundle = read_bundle(d)
    assert bundle.expected == {sha(big): len(big), sha(bk.BASE_LAYER): len(bk.BASE_LAYER)}
    assert d.stat().st_size < 64 * 1024  # the big layer's bytes went by, and were dropped


def test_configs_streamed_past_the_memory_budget_are_shipped(tmp_path: Path, v1: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the small-file budget configs are streamed like layers: one on the site already is
    shipped all the same (a delta carries every config), and read back for the image."""
    from tvdeploy.bundle import savestream

    normal = read_bundle(build(tmp_path / "a.tar", hotfix_images(), digests_of(v1)))
    monkeypatch.setattr(savestream, "MAX_SMALL_TOTAL", 100)
    frugal = read_bundle(build(tmp_path / "b.tar", hotfix_images(), digests_of(v1)))
    assert frugal.release == normal.release and frugal.expected == normal.expected
    assert frugal.blob_digests == normal.blob_digests


def test_interrupted_delta_leaves_nothing(tmp_path: Path, v1: Path) -> None:
    from tvdeploy.errors import TvdeployError

    data = bk.docker_save(hotfix_images())
    spec = bk.spec_for(hotfix_images())
    base = Since(frozenset(read_bundle(v1).blob_digests), {})
    with pytest.raises(TvdeployError, match="stream ended early|not a docker save archive"):
        write_bundle(tmp_path / "d.tar", spec, io.BytesIO(data[: len(data) // 2]), since=base)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1.tar"]


def test_cli_refuses_a_delta_missing_a_base_entry(cli, tmp_path: Path, delta: Path) -> None:
    key, _kid = bk.make_key("signer-1")
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-1")[0]])
    bk.sign_with(delta, key)
    base = f"sha256:{sha(bk.BASE_LAYER)}"

    def forget_base(doc: dict[str, Any]) -> None:
        doc["expected_on_site"] = [e for e in doc["expected_on_site"] if e["digest"] != base]

    bad = rewrite(delta, tmp_path / "bad.tar", manifest=forget_base)
    for argv in (("verify", bad, "--trust", root), ("inspect", bad)):
        r = cli("bundle", *argv)
        assert r.code == 1 and r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1
        assert r.stderr.startswith(f"error: {bad}: blobs/sha256/{base[7:]}: missing blob (referenced by image ")
