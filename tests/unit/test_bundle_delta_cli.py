"""``bundle build --since | --chunk-size --key``, ``bundle verify|inspect|sign`` on deltas and chunk
folders: the real CLI in-process. The build engine is the stand-in of test_bundle_engine (no
dockerd may run in unit tests); the site inventories are hand-made with ``make_inventory``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tests.unit.test_bundle_delta import HOTFIX_LAYER, hotfix_images, sha, v1_images
from tests.unit.test_bundle_engine import serve
from tvdeploy.bundle.inventory import make_inventory
from tvdeploy.bundle.reader import read_bundle


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The stand-in serves version 1 of every image and the cloud hot-fix.
    served = [*v1_images(), hotfix_images()[0]]
    monkeypatch.setattr(bk, "default_images", lambda: served)
    for host, _server in serve(tmp_path):
        yield host


@pytest.fixture
def keys(tmp_path: Path, operator_key: str) -> Path:
    signers = [bk.make_key(n)[0] for n in ("signer-1", "signer-2")]
    return bk.make_trust(tmp_path / "root.json", signers, 1, [bk.make_key("root-1")[0]])


def spec(tmp_path: Path, name: str, images: list[bk.FakeImage], seq: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"release: {name}\nsequence: {seq}\nimages:\n" + "".join(
        f"  {img.tag.split('/')[1].split(':')[0]}: {img.tag}\n" for img in images))
    return path


def have_file(cli, tmp_path: Path, engine: str, signer: tuple | None = None) -> Path:
    """A v1 bundle built through the CLI, and a hand-made inventory of its blobs."""
    v1 = tmp_path / "v1.tar"
    r = cli("bundle", "build", spec(tmp_path, "v1", v1_images(), 1), "--engine", engine, "-o", v1)
    assert r.code == 0, r.stderr
    from tvdeploy.audit.recorder import signing_key

    have = tmp_path / "HAVE.json"
    digests = [f"sha256:{h}" for h in read_bundle(v1).blob_digests]
    have.write_bytes(make_inventory("plant-7", digests, {"release": "v1", "sequence": 1}, signer or signing_key()))
    return have


def test_delta_build_verify_inspect(cli, engine: str, keys: Path, tmp_path: Path) -> None:
    have = have_file(cli, tmp_path, engine)
    out = tmp_path / "v2-delta.tar"
    r = cli("bundle", "build", spec(tmp_path, "v2", hotfix_images(), 2), "--engine", engine, "-o", out,
            "--since", have, "--key", "signer-1")
    assert r.code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"{out}: release v2 (sequence 2), 3 images, 7 blobs, ")
    assert lines[1].startswith(f"{out}: delta: 7 blobs shipped, 3 expected on site (")
    bundle = read_bundle(out)
    assert sha(HOTFIX_LAYER) in bundle.blob_digests and len(bundle.expected) == 3
    assert len(bundle.signatures) == 1  # --key signed it

    r = cli("bundle", "verify", out, "--trust", keys)
    assert r.code == 0, r.stderr
    assert r.stdout.strip().splitlines()[1].startswith(f"{out}: delta: 7 blobs shipped, 3 expected on site (")
    r = cli("bundle", "verify", out, "--trust", keys, "-v")
    assert sum("expected on site: sha256:" in line for line in r.stdout.splitlines()) == 3
    r = cli("bundle", "verify", out, "--trust", keys, "--json")
    doc = json.loads(r.stdout)
    assert doc["delta"] is True and doc["shipped_blobs"] == 7 and len(doc["expected_on_site"]) == 3
    assert doc["since"]["site"] == "plant-7" and doc["since"]["release"] == "v1"

    r = cli("bundle", "inspect", out, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    cloud, edge = doc["images"]["cloud"], doc["images"]["edge"]
    cfg = len(hotfix_images()[0].config())
    assert cloud["shipped_bytes"] == cfg + len(HOTFIX_LAYER) and cloud["expected_bytes"] == len(bk.BASE_LAYER)
    assert edge["shipped_bytes"] == len(v1_images()[1].config())
    assert edge["expected_bytes"] == sum(map(len, v1_images()[1].layers))
    assert doc["expected_on_site"]["blobs"] == 3 and doc["delta"] is True
    r = cli("bundle", "inspect", out)
    assert "delta: " in r.stdout and "expected on site in 3 blobs (built against the inventory of site plant-7)" \
        in r.stdout
    assert "shipped" in r.stdout and "on site" in r.stdout

    events = [json.loads(line)["event"] for line in _audit_lines()]
    assert events[-2:] == ["bundle.build", "bundle.sign"]


def _audit_lines() -> list[str]:
    from tvdeploy.audit.recorder import global_log_path

    return global_log_path().read_text().splitlines()


def test_inventory_of_another_operator(cli, engine: str, keys: Path, tmp_path: Path) -> None:
    other = bk.make_key("operator-b")
    have = have_file(cli, tmp_path, engine, signer=other)
    args = ("bundle", "build", spec(tmp_path, "v2", hotfix_images(), 2), "--engine", engine,
            "-o", tmp_path / "d.tar", "--since", have)
    r = cli(*args)
    assert r.code == 1 and r.stderr.startswith(f"error: {have}: inventory signature does not verify")
    assert not (tmp_path / "d.tar").exists()
    from tvdeploy.keys.store import public_pem

    pub = tmp_path / "operator-b.pub"
    pub.write_bytes(public_pem(other[0].public_key()))
    r = cli(*args, "--inventory-key", pub)
    assert r.code == 0, r.stderr


def test_refusals(cli, engine: str, keys: Path, tmp_path: Path) -> None:
    s = spec(tmp_path, "v2", hotfix_images(), 2)
    r = cli("bundle", "build", s, "--engine", engine, "-o", tmp_path / "x", "--chunk-size", "1MiB")
    assert r.code == 64 and "--chunk-size needs --key NAME" in r.stderr
    r = cli("bundle", "build", s, "--engine", engine, "-o", tmp_path / "x", "--chunk-size", "lots", "--key", "k")
    assert r.code == 64
    r = cli("bundle", "build", s, "--engine", engine, "-o", tmp_path / "x", "--inventory-key", tmp_path / "k.pub")
    assert (r.code, r.stderr.strip()) == (1, "error: --inventory-key: only meaningful with --since HAVE.json")
    r = cli("bundle", "build", s, "--engine", engine, "-o", tmp_path / "x", "--since", tmp_path / "none.json")
    assert (r.code, r.stderr.strip()) == (1, f"error: {tmp_path / 'none.json'}: inventory not found")
    assert not (tmp_path / "x").exists()


def test_build_chunked_then_verify_inspect_sign(cli, engine: str, keys: Path, tmp_path: Path) -> None:
    media = tmp_path / "usb"
    r = cli("bundle", "build", spec(tmp_path, "v1", v1_images(), 1), "--engine", engine, "-o", media,
            "--chunk-size", "8KiB", "--key", "signer-1", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    names = [c["name"] for c in doc["chunks"]]
    assert names[0] == "usb.000" and len(names) > 3
    assert doc["size"] == sum(c["size"] for c in doc["chunks"])  # the signed bundle that was split
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".usb")) == []  # no leftovers
    assert sorted(p.name for p in media.iterdir()) == sorted([*names, "chunks.json", "chunks.sig"])

    r = cli("bundle", "verify", media, "--trust", keys)
    assert r.code == 0, r.stderr
    assert "bundle usb.tar verified: release v1 (sequence 1), 3 images" in r.stdout
    r = cli("bundle", "inspect", media, "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["release"] == "v1"

    r = cli("bundle", "sign", media, "--key", "signer-2")
    assert r.code == 1 and r.stderr.startswith(f"error: {media}: is a chunk folder; a chunked bundle cannot be "
                                               "signed: sign the bundle file before splitting it")

    with open(media / names[2], "r+b") as fh:
        fh.write(b"X")
    (media / names[3]).unlink()
    r = cli("bundle", "verify", media, "--trust", keys)
    assert (r.code, r.stderr.strip()) == (
        1, f"error: {media}: 2 of {len(names)} chunks bad: {names[2]} (corrupt), {names[3]} (missing); "
           "copy those again")
    r = cli("bundle", "inspect", media)
    assert r.code == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    events = [json.loads(line)["event"] for line in _audit_lines()]
    assert events[-3:] == ["bundle.build", "bundle.sign", "bundle.split"]


def test_verify_delta_chunk_folder(cli, engine: str, keys: Path, tmp_path: Path) -> None:
    have = have_file(cli, tmp_path, engine)
    media = tmp_path / "dvd"
    r = cli("bundle", "build", spec(tmp_path, "v2", hotfix_images(), 2), "--engine", engine, "-o", media,
            "--since", have, "--chunk-size", "4KiB", "--key", "signer-1")
    assert r.code == 0, r.stderr
    r = cli("bundle", "verify", media, "--trust", keys)
    assert r.code == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(f"{media}: delta: 7 blobs shipped, 3 expected on site")
    r = cli("bundle", "verify-chunks", media, "--trust", keys, "--json")  # the alias
    assert json.loads(r.stdout)["bundle_verified"]["delta"] is True
