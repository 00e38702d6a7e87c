"""``bundle build --compress`` and every reader of a compressed bundle (verify, inspect, split,
join, verify of its chunk folder), the real CLI in-process against the stand-in engine of
test_bundle_engine. The compressed bundle's contents, digests and signatures are the plain one's;
a truncated one is refused with one line, exit 1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tests.unit.test_bundle_delta import hotfix_images, v1_images
from tests.unit.test_bundle_engine import serve
from tvdeploy.bundle.compress import file_is_compressed
from tvdeploy.bundle.reader import read_bundle


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    served = [*v1_images(), hotfix_images()[0]]
    monkeypatch.setattr(bk, "default_images", lambda: served)
    for host, _server in serve(tmp_path):
        yield host


@pytest.fixture
def root(tmp_path: Path, operator_key: str) -> Path:
    return bk.make_trust(tmp_path / "root.json", [bk.make_key("signer-1")[0]], 1, [bk.make_key("root-1")[0]])


def spec(tmp_path: Path) -> Path:
    path = tmp_path / "v1.yaml"
    path.write_text("release: v1\nsequence: 1\nimages:\n" + "".join(
        f"  {img.tag.split('/')[1].split(':')[0]}: {img.tag}\n" for img in v1_images()))
    return path


@pytest.fixture
def packed(cli, engine: str, root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "v1.tar.zst"
    r = cli("bundle", "build", spec(tmp_path), "--engine", engine, "-o", out, "--key", "signer-1", "--compress")
    assert r.code == 0, r.stderr
    assert f"{out}: zstd-compressed (" in r.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".v1")] == []  # no plain copy left
    return out


def test_compressed_bundle_is_the_signed_plain_one(cli, packed: Path, engine: str, tmp_path: Path) -> None:
    assert file_is_compressed(packed)
    plain = tmp_path / "plain.tar"
    plain.write_bytes(subprocess.run(["zstd", "-dc", str(packed)], capture_output=True, check=True).stdout)
    a, b = read_bundle(plain), read_bundle(packed)
    assert b.compressed and not a.compressed
    assert (a.manifest_sha256, a.blob_digests, a.size) == (b.manifest_sha256, b.blob_digests, b.size)
    assert {n: e.to_json() for n, e in a.signatures.items()} == {n: e.to_json() for n, e in b.signatures.items()}


def test_verify_and_inspect_read_it_directly(cli, packed: Path, root: Path) -> None:
    r = cli("bundle", "verify", packed, "--trust", root)
    assert r.code == 0, r.stderr
    assert r.stdout.startswith(f"{packed}: verified: release v1 (sequence 1)")
    r = cli("bundle", "inspect", packed, "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["compressed"] is True and doc["release"] == "v1" and len(doc["signatures"]) == 1


def test_split_verify_join_a_compressed_bundle(cli, packed: Path, root: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    r = cli("bundle", "split", packed, "--size", "4KiB", "-o", media, "--key", "signer-1")
    assert r.code == 0, r.stderr
    r = cli("bundle", "verify", media, "--trust", root)
    assert r.code == 0, r.stderr
    r = cli("bundle", "inspect", media, "--json")
    assert r.code == 0 and json.loads(r.stdout)["compressed"] is True, r.stderr
    joined = tmp_path / "joined.tar.zst"
    r = cli("bundle", "join", media, "-o", joined, "--trust", root)
    assert r.code == 0, r.stderr
    assert joined.read_bytes() == packed.read_bytes()


def test_truncated_compressed_bundle_is_refused(cli, packed: Path, root: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.tar.zst"
    short.write_bytes(packed.read_bytes()[:-100])
    for argv in (("verify", short, "--trust", root), ("inspect", short)):
        r = cli("bundle", *argv)
        assert r.code == 1, r.stdout
        assert r.stderr.strip().splitlines() == [f"error: {short}: truncated compressed bundle, or not one "
                                                  "tvdeploy wrote (no seek table at its end); copy it again"]


def test_signing_a_compressed_bundle_is_refused(cli, packed: Path) -> None:
    r = cli("bundle", "sign", packed, "--key", "signer-1")
    assert r.code == 1
    assert r.stderr.startswith(f"error: {packed}: is a compressed bundle;")


def test_compressed_chunked_build(cli, engine: str, root: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    r = cli("bundle", "build", spec(tmp_path), "--engine", engine, "-o", media, "--key", "signer-1", "--compress",
            "--chunk-size", "4KiB")
    assert r.code == 0, r.stderr
    assert any(p.name.endswith(".000") for p in media.iterdir()), list(media.iterdir())
    r = cli("bundle", "verify", media, "--trust", root)
    assert r.code == 0, r.stderr
    r = cli("bundle", "inspect", media, "--json")
    assert r.code == 0 and json.loads(r.stdout)["compressed"] is True, r.stderr
