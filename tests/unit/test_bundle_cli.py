"""bundle sign | verify | inspect through the real CLI (bundles built from synthetic docker save
archives), and the build command's refusals that need no engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.reader import read_bundle


@pytest.fixture
def signers(operator_key: str, tmp_path: Path) -> Path:
    """signer-1..3 and root-1 in the key store; a trust root needing 2 of the 3 signers."""
    keys = [bk.make_key(f"signer-{i}")[0] for i in (1, 2, 3)]
    root_key, _ = bk.make_key("root-1")
    return bk.make_trust(tmp_path / "root.json", keys, 2, [root_key])


def test_sign_two_of_three_then_verify(cli, signers: Path, tmp_path: Path) -> None:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    before = read_bundle(bundle)
    head = bundle.read_bytes()[: before.end_offset]

    r = cli("bundle", "sign", bundle, "--key", "signer-1")
    assert r.code == 0, r.stderr
    assert "signed by signer-1" in r.stdout
    r = cli("bundle", "verify", bundle, "--trust", signers)
    assert r.code == 1
    assert "signed by 1 of the 2 distinct trusted keys required" in r.stderr

    assert cli("bundle", "sign", bundle, "--key", "signer-3").code == 0
    r = cli("bundle", "verify", bundle, "--trust", signers)
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == (
        f"{bundle}: verified: release 2026.11-1 (sequence 1), 3 images, 10 blobs; signed by 2 distinct "
        "trusted keys (signer-1, signer-3), 2 required; trust root version 1"
    )
    # Signing appended members: every byte before the old end of archive is unchanged.
    assert bundle.read_bytes()[: before.end_offset] == head

    doc = json.loads(cli("bundle", "verify", bundle, "--trust", signers, "--json").stdout)
    assert doc["verified"] is True and sorted(s["name"] for s in doc["signatures"]) == ["signer-1", "signer-3"]

    from tvdeploy.audit.recorder import global_log_path

    events = [json.loads(line) for line in global_log_path().read_text().splitlines()]
    sign_events = [e for e in events if e["event"] == "bundle.sign"]
    assert len(sign_events) == 2
    assert sign_events[0]["objects"][0]["digest"] == f"sha256:{before.manifest_sha256}"


def test_many_blobs_sign_and_verify(cli, signers: Path, tmp_path: Path) -> None:
    # 120 images x 5 distinct layers: a statement of ~960 subjects, well over 64 KiB.
    images = [bk.FakeImage(f"trueverit/s{i}:1", [bk.layer_tar({f"f{j}": f"{i}-{j}".encode()}) for j in range(5)])
              for i in range(120)]
    bundle = bk.make_bundle(tmp_path / "b.tar", images)
    assert cli("bundle", "sign", bundle, "--key", "signer-1").code == 0
    assert cli("bundle", "sign", bundle, "--key", "signer-2").code == 0
    r = cli("bundle", "verify", bundle, "--trust", signers)
    assert r.code == 0, r.stderr
    assert "120 images, 840 blobs" in r.stdout


def test_signing_twice_with_one_key_is_refused(cli, signers: Path, tmp_path: Path) -> None:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    assert cli("bundle", "sign", bundle, "--key", "signer-1").code == 0
    size = bundle.stat().st_size
    r = cli("bundle", "sign", bundle, "--key", "signer-1")
    assert r.code == 1
    assert r.stderr.startswith(f"error: {bundle}: already signed by key ")
    assert bundle.stat().st_size == size


def test_sign_refuses_a_damaged_bundle(cli, signers: Path, tmp_path: Path) -> None:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    data = bundle.read_bytes()
    bundle.write_bytes(data[:-2000])
    r = cli("bundle", "sign", bundle, "--key", "signer-1")
    assert r.code == 1 and "truncated tar" in r.stderr
    assert bundle.read_bytes() == data[:-2000]


def test_sign_with_unknown_key(cli, signers: Path, tmp_path: Path) -> None:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    r = cli("bundle", "sign", bundle, "--key", "nobody")
    assert r.code == 1 and r.stderr.startswith("error: no private key named 'nobody'")


def test_inspect(cli, signers: Path, tmp_path: Path) -> None:
    bundle = bk.make_bundle(tmp_path / "b.tar")
    cli("bundle", "sign", bundle, "--key", "signer-2")
    r = cli("bundle", "inspect", bundle)
    assert r.code == 0, r.stderr
    assert r.stdout.startswith(f"{bundle}: release 2026.11-1 (sequence 1), 3 images, 10 blobs")
    assert "trueverit/iot-flow:1.0" in r.stdout and "(signer-2) (unverified; use bundle verify)" in r.stdout
    doc = json.loads(cli("bundle", "inspect", bundle, "--json").stdout)
    assert set(doc["images"]) == {"cloud", "edge", "iot-flow"}
    assert doc["images"]["cloud"]["layers"] == 2 and doc["images"]["cloud"]["digest"].startswith("sha256:")
    assert len(doc["signatures"]) == 1


def test_bundle_that_is_a_fifo(cli, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "b.tar"
    os.mkfifo(fifo)
    r = cli("bundle", "inspect", fifo)
    assert (r.code, r.stderr.strip()) == (1, f"error: {fifo}: not a regular file, expected a bundle file")


def test_missing_bundle(cli, tmp_path: Path) -> None:
    r = cli("bundle", "inspect", tmp_path / "none.tar")
    assert (r.code, r.stderr.strip()) == (1, f"error: {tmp_path / 'none.tar'}: bundle not found")
    # A folder is read as a chunk folder (every bundle command accepts one): this one is not.
    r = cli("bundle", "inspect", tmp_path)
    assert (r.code, r.stderr.strip()) == (1, f"error: {tmp_path / 'chunks.json'}: chunk index not found (not a "
                                             "chunk folder, or the split did not finish)")


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "release.yaml"
    spec.write_text("release: r1\nsequence: 1\nimages:\n  cloud: trueverit/cloud:1.0\n")
    return spec


def test_build_with_an_unreachable_engine(cli, operator_key: str, tmp_path: Path) -> None:
    sock = tmp_path / "no.sock"
    r = cli("bundle", "build", _spec(tmp_path), "--engine", f"unix://{sock}", "-o", tmp_path / "b.tar")
    assert r.code == 1
    assert r.stderr.startswith(f"error: build engine unix://{sock}: ")
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.yaml"]


def test_build_with_a_bad_engine_url(cli, operator_key: str, tmp_path: Path) -> None:
    r = cli("bundle", "build", _spec(tmp_path), "--engine", "ftp://x", "-o", tmp_path / "b.tar")
    assert (r.code, r.stderr.strip()) == (
        1, "error: --engine ftp://x: expected unix:///path/docker.sock or tcp://HOST:PORT")


def test_build_with_a_bad_spec(cli, operator_key: str, tmp_path: Path) -> None:
    spec = tmp_path / "release.yaml"
    spec.write_text("release: r1\nsequence: 0\nimages:\n  cloud: trueverit/cloud:1.0\n")
    r = cli("bundle", "build", spec, "--engine", "unix:///x.sock", "-o", tmp_path / "b.tar")
    assert (r.code, r.stderr.strip()) == (
        1, f"error: {spec}:2: sequence: Input should be greater than or equal to 1")


def test_build_needs_its_options(cli, tmp_path: Path) -> None:
    assert cli("bundle", "build", _spec(tmp_path)).code == 64
