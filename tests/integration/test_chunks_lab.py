"""Chunks on the lab (issue 8, first "Done when", with --small images): a version 1 bundle built
from the lab's build engine, split into chunks; one chunk corrupted and one removed -> verify
names exactly those two; after restoring them, join gives a file identical to the original and
the chunks are untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests import bundlekit as bk

pytestmark = pytest.mark.lab


def snapshot(d: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.rglob("*")) if p.is_file()}


def test_split_damage_verify_restore_join(cli, lab_images, operator_key: str, tmp_path: Path) -> None:
    keys = {name: bk.make_key(name)[0] for name in ("signer-1", "signer-2", "signer-3", "root-1")}
    bundle = tmp_path / "lab-v1.tar"
    r = cli("bundle", "build", lab_images.release_v1, "--engine", lab_images.docker_host, "-o", bundle)
    assert r.code == 0, r.stderr
    for name in ("signer-1", "signer-2"):
        assert cli("bundle", "sign", bundle, "--key", name).code == 0
    root = bk.make_trust(tmp_path / "root.json", [keys["signer-1"], keys["signer-2"], keys["signer-3"]], 2,
                         [keys["root-1"]])
    size = bundle.stat().st_size
    chunk = -(-size // 6)  # six chunks, the last one shorter
    media = tmp_path / "usb"
    r = cli("bundle", "split", bundle, "--size", str(chunk), "-o", media, "--key", "signer-1", "--key", "signer-2",
            "--json")
    assert r.code == 0, r.stderr
    names = [c["name"] for c in json.loads(r.stdout)["chunks"]]
    assert names == [f"lab-v1.{i:03d}" for i in range(6)]
    original = snapshot(media)

    saved = tmp_path / "saved"
    saved.mkdir()
    shutil.copy2(media / names[1], saved / names[1])
    shutil.move(media / names[4], saved / names[4])
    with open(media / names[1], "r+b") as fh:
        fh.seek(chunk // 2)
        byte = fh.read(1)
        fh.seek(chunk // 2)
        fh.write(bytes([byte[0] ^ 0x01]))

    r = cli("bundle", "verify", media, "--trust", root, "--json")  # a chunk folder, where a bundle goes
    assert r.code == 1
    doc = json.loads(r.stdout)
    assert [(b["name"], b["problem"]) for b in doc["bad_chunks"]] == [(names[1], "corrupt"), (names[4], "missing")]
    assert r.stderr.strip() == (f"error: {media}: 2 of 6 chunks bad: {names[1]} (corrupt), {names[4]} (missing); "
                                "copy those again")

    shutil.copy2(saved / names[1], media / names[1])
    shutil.copy2(saved / names[4], media / names[4])
    restored = snapshot(media)
    assert {k: v[2] for k, v in restored.items()} == {k: v[2] for k, v in original.items()}

    r = cli("bundle", "verify", media, "--trust", root)
    assert r.code == 0, r.stderr
    assert "bundle lab-v1.tar verified: release lab-v1 (sequence 1), " in r.stdout

    joined = tmp_path / "joined.tar"
    r = cli("bundle", "join", media, "-o", joined, "--trust", root)
    assert r.code == 0, r.stderr
    assert hashlib.sha256(joined.read_bytes()).digest() == hashlib.sha256(bundle.read_bytes()).digest()
    assert snapshot(media) == restored  # join read the chunks, nothing more (size, mtime, content)
    assert cli("bundle", "verify", joined, "--trust", root).code == 0
