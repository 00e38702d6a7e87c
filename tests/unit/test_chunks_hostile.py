"""Hostile chunk folders: each refused by ``bundle verify-chunks`` (and ``bundle join``) with ONE
line naming the file and what is wrong, exit 1, no traceback, nothing written anywhere."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.unit import chunkkit as ck
from tvdeploy.bundle import trust
from tvdeploy.keys.store import key_id


@pytest.fixture
def c(tmp_path: Path, operator_key: str) -> ck.Chunked:
    return ck.make_chunked(tmp_path / "work")


def tree(path: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(path)), p.lstat().st_size) for p in path.rglob("*"))


def refused(cli, c: ck.Chunked, expected: str, root: Path | None = None) -> str:
    before = tree(c.work)
    for argv in (("bundle", "verify-chunks", c.dir, "--trust", root or c.root),
                 ("bundle", "join", c.dir, "-o", c.work / "joined.tar", "--trust", root or c.root)):
        r = cli(*argv)
        lines = r.stderr.strip().splitlines()
        assert r.code == 1, r.stderr
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].endswith("more errors; -v shows all)")), r.stderr
        assert lines[0].startswith("error: "), r.stderr
        assert expected in lines[0], lines[0]
        assert "Traceback" not in r.stderr and r.stdout == ""
        assert tree(c.work) == before  # nothing written, not even a temporary file
    return lines[0]


def index_doc(c: ck.Chunked) -> dict[str, Any]:
    return json.loads((c.dir / "chunks.json").read_bytes())


def resign_doc(c: ck.Chunked, doc: Any) -> None:
    ck.resign(c, json.dumps(doc).encode())


def kid(c: ck.Chunked, name: str) -> str:
    return key_id(c.keys[name].public_key())


# ---- hostile indexes, signed by trusted keys (the index parser is the last line) ---------------

def _set_name(i: int, name: str):
    def edit(doc: dict[str, Any]) -> None:
        doc["chunks"][i]["name"] = name
    return edit


def _drop_last(doc: dict[str, Any]) -> None:
    doc["chunks"].pop()


def _resize(doc: dict[str, Any]) -> None:
    doc["chunks"][0]["size"] -= 1
    doc["chunks"][1]["size"] += 1


def _total(doc: dict[str, Any]) -> None:
    doc["size"] += 1


HOSTILE_INDEX = [
    ("dotdot", _set_name(3, "../../etc/passwd"), "chunks[3].name: '../../etc/passwd' is a path"),
    ("bare dotdot", _set_name(3, ".."), "chunks[3].name: '..' is not a chunk file name"),
    ("absolute", _set_name(0, "/etc/shadow"), "chunks[0].name: '/etc/shadow' is a path"),
    ("slash", _set_name(1, "sub/bundle.001"), "chunks[1].name: 'sub/bundle.001' is a path"),
    ("backslash", _set_name(1, "..\\x"), "is a path"),
    ("hidden", _set_name(2, ".bundle.002.part"), "is not a chunk file name"),
    ("reserved", _set_name(2, "chunks.json"), "'chunks.json' is not a chunk file name"),
    ("control char", _set_name(2, "a\nb"), "is not a chunk file name"),
    ("duplicate", _set_name(4, "bundle.003"), "chunks[4].name: 'bundle.003' listed twice"),
    ("sizes", _resize, "chunks[0].size: 4095 bytes, but the sizes only add up with 4096"),
    ("count", _drop_last, "chunks: 16 listed, but 69632 bytes in chunks of 4096 make 17"),
    ("total", _total, "chunks: 17 listed, but 69633 bytes in chunks of 4096 make 18"),
    ("short total", lambda d: d.update(size=69631), "chunks[16].size: 4096 bytes, but the sizes only add up with 4095"),
    ("format", lambda d: d.update(format="tvdeploy-chunks/2"), "format: expected 'tvdeploy-chunks/1'"),
    ("extra key", lambda d: d.update(extra=1), "not a chunk index (expected keys"),
    ("negative", lambda d: d["chunks"][0].update(size=-4096), "chunks[0].size: expected an integer >= 1"),
    ("bool size", lambda d: d.update(chunk_size=True), "chunk_size: expected an integer >= 1"),
    ("bad hex", lambda d: d["chunks"][0].update(sha256="AB" * 32), "chunks[0].sha256: expected 64 hex digits"),
    ("bundle path", lambda d: d.update(bundle="../x.tar"), "bundle: '../x.tar' is a path"),
    ("empty", lambda d: d.update(chunks=[]), "chunks: expected a non-empty list"),
]


@pytest.mark.parametrize(("case", "edit", "message"), HOSTILE_INDEX, ids=[h[0] for h in HOSTILE_INDEX])
def test_hostile_index_is_refused(cli, c: ck.Chunked, case: str, edit, message: str) -> None:
    doc = index_doc(c)
    edit(doc)
    resign_doc(c, doc)
    line = refused(cli, c, message)
    assert "chunks.json: " in line


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "malformed JSON"),
    (b'{"format": "tvdeploy-chunks/1", "format": "x"}', "duplicate key 'format'"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
    (b'{"size": NaN}', "NaN is not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"", "malformed JSON"),
])
def test_malformed_index_is_refused(cli, c: ck.Chunked, content: bytes, message: str) -> None:
    ck.resign(c, content)
    refused(cli, c, message)


def test_oversized_index_is_refused_before_reading(cli, c: ck.Chunked) -> None:
    os.truncate(c.dir / "chunks.json", 16 * 1024 * 1024 + 1)  # sparse: never read
    refused(cli, c, "chunks.json: oversized chunk index (16777217 bytes; at most 16777216)")


def test_symlinked_index_is_refused(cli, c: ck.Chunked) -> None:
    real = c.work / "elsewhere.json"
    shutil.move(c.dir / "chunks.json", real)
    (c.dir / "chunks.json").symlink_to(real)
    refused(cli, c, "chunks.json: not a regular file: a symlink")


# ---- signatures over the index -----------------------------------------------------------------

def test_unsigned_index(cli, c: ck.Chunked) -> None:
    shutil.rmtree(c.dir / "chunks.sig")
    refused(cli, c, "chunks.json: signed by 0 of the 2 distinct trusted keys required")


def test_under_threshold(cli, c: ck.Chunked) -> None:
    (c.dir / "chunks.sig" / f"{kid(c, 'signer-2')}.json").unlink()
    refused(cli, c, "chunks.json: signed by 1 of the 2 distinct trusted keys required")


def test_tampered_index_without_resigning(cli, c: ck.Chunked) -> None:
    doc = index_doc(c)
    bad = c.chunk(3).read_bytes()[::-1]
    import hashlib

    doc["chunks"][3]["sha256"] = hashlib.sha256(bad).hexdigest()
    (c.dir / "chunks.json").write_bytes(json.dumps(doc).encode())
    c.chunk(3).write_bytes(bad)
    refused(cli, c, "signed by 0 of the 2 distinct trusted keys required (chunks.sig/")
    assert "signed statement is for other content" in cli("bundle", "verify-chunks", c.dir, "--trust", c.root,
                                                          "-v").stderr


def test_same_key_twice_counts_once(cli, c: ck.Chunked) -> None:
    sig_dir = c.dir / "chunks.sig"
    one = sig_dir / f"{kid(c, 'signer-1')}.json"
    (sig_dir / f"{kid(c, 'signer-2')}.json").write_bytes(one.read_bytes())
    line = refused(cli, c, "signed by 1 of the 2 distinct trusted keys required")
    assert "same key already counted" in line


def test_untrusted_key(cli, c: ck.Chunked) -> None:
    ck.resign(c, (c.dir / "chunks.json").read_bytes(), signers=("signer-1", "outsider"))
    refused(cli, c, "key is not in the trust root")


def test_revoked_key(cli, c: ck.Chunked) -> None:
    chain = trust.load_chain(c.root)
    chain = trust.next_version(chain, sign_with=[c.keys["root-1"]], where="v2", revoke=[kid(c, "signer-2")])
    v2 = c.work / "root-v2.json"
    v2.write_bytes(trust.chain_document(chain))
    refused(cli, c, f"key {kid(c, 'signer-2')[:16]}: key is revoked", root=v2)


def test_expired_trust_root(cli, c: ck.Chunked) -> None:
    from datetime import UTC, datetime, timedelta

    from tests import bundlekit as bk

    past = datetime.now(UTC) - timedelta(days=1)
    root = bk.make_trust(c.work / "old-root.json", [c.keys["signer-1"], c.keys["signer-2"]], 2,
                         [c.keys["root-1"]], expires=past, now=past - timedelta(days=1))
    refused(cli, c, "trust root version 1 expired on", root=root)


def test_a_bundle_signature_cannot_stand_in_for_an_index_signature(cli, c: ck.Chunked) -> None:
    """Move the bundle's own (valid, trusted) envelopes into chunks.sig: different statement."""
    from tvdeploy.bundle.reader import read_bundle

    bundle = read_bundle(c.bundle)
    shutil.rmtree(c.dir / "chunks.sig")
    (c.dir / "chunks.sig").mkdir()
    for env in bundle.signatures.values():
        (c.dir / "chunks.sig" / f"{env.signatures[0].keyid}.json").write_bytes(env.to_json())
    refused(cli, c, "signed statement is for other content")


@pytest.mark.parametrize(("content", "status"), [
    (b"not json", "not a valid envelope"),
    (b'{"payload": "", "payloadType": "x", "signatures": []}', "not a valid envelope"),
    (b"x" * (64 * 1024 + 1), "oversized"),
])
def test_malformed_envelopes_do_not_count(cli, c: ck.Chunked, content: bytes, status: str) -> None:
    (c.dir / "chunks.sig" / f"{kid(c, 'signer-2')}.json").write_bytes(content)
    line = refused(cli, c, "signed by 1 of the 2 distinct trusted keys required")
    assert status in line


def test_symlinked_signature_does_not_count(cli, c: ck.Chunked) -> None:
    sig = c.dir / "chunks.sig" / f"{kid(c, 'signer-2')}.json"
    real = c.work / "sig.json"
    shutil.move(sig, real)
    sig.symlink_to(real)
    line = refused(cli, c, "signed by 1 of the 2 distinct trusted keys required")
    assert "symlink" in line


def test_too_many_signature_files(cli, c: ck.Chunked) -> None:
    one = (c.dir / "chunks.sig" / f"{kid(c, 'signer-1')}.json").read_bytes()
    for i in range(70):
        (c.dir / "chunks.sig" / f"{i:064x}.json").write_bytes(one)
    refused(cli, c, "more than 64 signatures")


def test_names_differing_only_in_case_are_one_file_on_usb_media(cli, c: ck.Chunked) -> None:
    doc = index_doc(c)
    doc["chunks"][5]["name"] = "BUNDLE.004"
    resign_doc(c, doc)
    refused(cli, c, "chunks[5].name: 'BUNDLE.004' listed twice")


def test_symlinked_signature_folder_is_refused(cli, c: ck.Chunked) -> None:
    real = c.work / "sigs"
    shutil.move(c.dir / "chunks.sig", real)
    (c.dir / "chunks.sig").symlink_to(real)
    refused(cli, c, "chunks.sig: is a symlink (refused; copy the folder itself)")
