"""``tvdeploy bundle split | verify-chunks | join``: the real CLI in-process, exact outcomes,
audit records, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.audit.recorder import global_log_path


@pytest.fixture
def work(tmp_path: Path, operator_key: str) -> Path:
    keys = {name: bk.make_key(name)[0] for name in ("signer-1", "signer-2", "root-1")}
    bundle = bk.make_bundle(tmp_path / "release-1.tar")
    bk.sign_with(bundle, keys["signer-1"])
    bk.sign_with(bundle, keys["signer-2"])
    bk.make_trust(tmp_path / "root.json", [keys["signer-1"], keys["signer-2"]], 2, [keys["root-1"]])
    return tmp_path


def events() -> list[dict]:
    return [json.loads(line) for line in global_log_path().read_text().splitlines()]


def test_split_verify_join(cli, work: Path) -> None:
    r = cli("bundle", "split", work / "release-1.tar", "--size", "8KiB", "-o", work / "media",
            "--key", "signer-1", "--key", "signer-2")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == (f"{work / 'media'}: 9 chunks of 8.0 KiB (68.0 KiB in all) and chunks.json signed "
                                "by 2 key(s)")
    assert (work / "media" / "release-1.000").exists() and (work / "media" / "release-1.008").exists()

    r = cli("bundle", "verify-chunks", work / "media", "--trust", work / "root.json")
    assert r.code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].endswith("9 chunks, 68.0 KiB: all present and intact; index signed by 2 of 2 required keys "
                             "(signer-1, signer-2); trust root version 1")
    assert "bundle release-1.tar verified: release 2026.11-1 (sequence 1), 3 images" in lines[1]

    r = cli("bundle", "join", work / "media", "-o", work / "joined.tar", "--trust", work / "root.json")
    assert r.code == 0, r.stderr
    assert (work / "joined.tar").read_bytes() == (work / "release-1.tar").read_bytes()

    recorded = [(e["event"], e["objects"]) for e in events() if e["event"].startswith("bundle.")]
    assert [e for e, _o in recorded][-2:] == ["bundle.split", "bundle.join"]
    split_objects = recorded[-2][1]
    assert split_objects[0]["type"] == "bundle" and split_objects[0]["digest"].startswith("sha256:")
    assert {o["name"] for o in split_objects if o["type"] == "key"} == {"signer-1", "signer-2"}


def test_json_outputs(cli, work: Path) -> None:
    r = cli("bundle", "split", work / "release-1.tar", "--size", "32768", "-o", work / "m", "--key", "signer-1",
            "--key", "signer-2", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["chunk_size"] == 32768 and [c["name"] for c in doc["chunks"]] == [
        "release-1.000", "release-1.001", "release-1.002"]
    r = cli("bundle", "verify-chunks", work / "m", "--trust", work / "root.json", "--json")
    doc = json.loads(r.stdout)
    assert r.code == 0 and doc["verified"] is True and doc["chunks_ok"] is True and doc["bad_chunks"] == []
    assert doc["bundle_verified"]["release"] == "2026.11-1"
    (work / "m" / "release-1.001").unlink()
    (work / "m" / "notes.txt").write_text("hi")
    r = cli("bundle", "verify-chunks", work / "m", "--trust", work / "root.json", "--json")
    doc = json.loads(r.stdout)
    assert r.code == 1 and doc["verified"] is False
    assert doc["bad_chunks"] == [{"name": "release-1.001", "problem": "missing", "detail": ""}]
    assert doc["extra_files"] == ["notes.txt"]
    assert r.stderr.strip() == (f"error: {work / 'm'}: 1 of 3 chunks bad: release-1.001 (missing); "
                                "copy it again")


def test_chunks_only_skips_the_bundle(cli, work: Path) -> None:
    cli("bundle", "split", work / "release-1.tar", "--size", "32KiB", "-o", work / "m", "--key", "signer-1",
        "--key", "signer-2")
    (work / "m" / "extra").write_text("x")
    r = cli("bundle", "verify-chunks", work / "m", "--trust", work / "root.json", "--chunks-only")
    assert r.code == 0 and len(r.stdout.strip().splitlines()) == 1
    assert r.stderr.strip().endswith(f"warning: {work / 'm' / 'extra'}: not part of the chunk index (ignored)")


def test_encrypted_key_with_passphrase_reference(cli, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvdeploy.config.secrets import Secret
    from tvdeploy.keys.store import generate_key

    generate_key("locked", passphrase=Secret("correct horse battery"))
    monkeypatch.setenv("LOCKED_PW", "wrong passphrase")
    r = cli("bundle", "split", work / "release-1.tar", "--size", "1MiB", "-o", work / "m", "--key", "locked",
            "--passphrase", "env:LOCKED_PW")
    assert r.code == 1 and "wrong passphrase" in r.stderr and "correct horse" not in r.stderr + r.stdout
    assert not (work / "m").exists()
    monkeypatch.setenv("LOCKED_PW", "correct horse battery")
    r = cli("bundle", "split", work / "release-1.tar", "--size", "1MiB", "-o", work / "m", "--key", "locked",
            "--passphrase", "env:LOCKED_PW")
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(("argv", "code", "message"), [
    (("--size", "lots"), 64, "is not a size"),
    (("--size", "0"), 64, "at least 1 byte"),
    (("--size", "1MiB"), 64, "--key"),  # no key: usage error
    (("--size", "1MiB", "--key", "nobody"), 1, "no private key named 'nobody'"),
])
def test_split_bad_arguments(cli, work: Path, argv: tuple[str, ...], code: int, message: str) -> None:
    r = cli("bundle", "split", work / "release-1.tar", "-o", work / "m", *argv)
    assert r.code == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (work / "m").exists()


def test_split_missing_bundle_and_no_space(cli, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("bundle", "split", work / "nope.tar", "--size", "1MiB", "-o", work / "m", "--key", "signer-1")
    assert r.code == 1 and r.stderr.strip() == f"error: {work / 'nope.tar'}: bundle not found"
    from tvdeploy.bundle import chunkio

    monkeypatch.setattr(chunkio, "disk_free", lambda p: 1)
    r = cli("bundle", "split", work / "release-1.tar", "--size", "1MiB", "-o", work / "m", "--key", "signer-1")
    assert r.code == 1 and "not enough free space" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (work / "m").exists()


def test_join_errors(cli, work: Path) -> None:
    r = cli("bundle", "join", work / "nothing", "-o", work / "x.tar")
    assert r.code == 1 and r.stderr.strip() == f"error: {work / 'nothing'}: chunk folder not found"
    r = cli("bundle", "join", work / "release-1.tar", "-o", work / "x.tar")
    assert r.code == 1 and "not a folder, expected a chunk folder" in r.stderr
    cli("bundle", "split", work / "release-1.tar", "--size", "32KiB", "-o", work / "m", "--key", "signer-1")
    r = cli("bundle", "join", work / "m", "-o", work / "release-1.tar")
    assert r.code == 1 and "already exists" in r.stderr
    r = cli("bundle", "join", work / "m", "-o", work / "no-such-dir" / "x.tar")
    assert r.code == 1 and "folder not found" in r.stderr


def test_warnings_for_uncounted_signatures_and_unchecked_join(cli, work: Path) -> None:
    bk.make_key("outsider")
    r = cli("bundle", "split", work / "release-1.tar", "--size", "32KiB", "-o", work / "m", "--key", "signer-1",
            "--key", "signer-2", "--key", "outsider")
    assert r.code == 0, r.stderr
    r = cli("bundle", "verify-chunks", work / "m", "--trust", work / "root.json", "--chunks-only")
    assert r.code == 0, r.stderr
    assert "key is not in the trust root (not counted)" in r.stderr
    r = cli("bundle", "join", work / "m", "-o", work / "j.tar")
    assert r.code == 0 and "signatures were not checked (no --trust)" in r.stderr
    r = cli("bundle", "join", work / "m", "-o", work / "k.tar", "--trust", work / "root.json")
    assert r.code == 0 and "warning:" not in r.stderr
