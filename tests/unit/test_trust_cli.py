"""tvdeploy trust init | add-signer | revoke | show, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import bundlekit as bk


@pytest.fixture
def keyset(operator_key: str, tmp_path: Path) -> dict[str, Path]:
    """signer-1..3 and root-1 in the key store; public key files of the signers."""
    files = {}
    for name in ("signer-1", "signer-2", "signer-3", "root-1"):
        key, _ = bk.make_key(name)
        from tvdeploy.keys.store import public_pem

        files[name] = tmp_path / f"{name}.pub"
        files[name].write_bytes(public_pem(key.public_key()))
    return files


def test_init_show_add_revoke(cli, keyset: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root-v1.json"
    r = cli("trust", "init", "-o", root, "--signer", keyset["signer-1"], "--signer", keyset["signer-2"],
            "--threshold", "2", "--root-key", "root-1", "--expires", "2099-01-01")
    assert r.code == 0, r.stderr
    assert "trust root version 1" in r.stdout and "bundles need 2 of 2 signers" in r.stdout

    r = cli("trust", "show", root, "--json")
    doc = json.loads(r.stdout)
    assert doc["version"] == 1 and doc["threshold"] == 2 and doc["expires"] == "2099-01-01T00:00:00Z"
    assert sorted(s["name"] for s in doc["signers"].values()) == ["signer-1", "signer-2"]

    v2 = tmp_path / "root-v2.json"
    r = cli("trust", "add-signer", root, "--signer", keyset["signer-3"], "--root-key", "root-1", "-o", v2)
    assert r.code == 0, r.stderr
    signer1 = next(k for k, s in doc["signers"].items() if s["name"] == "signer-1")
    v3 = tmp_path / "root-v3.json"
    r = cli("trust", "revoke", v2, signer1[:12], "--root-key", "root-1", "-o", v3)
    assert r.code == 0, r.stderr
    doc3 = json.loads(cli("trust", "show", v3, "--json").stdout)
    assert doc3["version"] == 3 and doc3["revoked"] == [signer1] and len(doc3["signers"]) == 2

    from tvdeploy.audit.recorder import global_log_path

    events = [json.loads(line)["event"] for line in global_log_path().read_text().splitlines()]
    assert events[-3:] == ["trust.init", "trust.add-signer", "trust.revoke"]


def test_add_signer_with_a_key_that_is_not_a_root_key(cli, keyset: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    assert cli("trust", "init", "-o", root, "--signer", keyset["signer-1"], "--threshold", "1",
               "--root-key", "root-1", "--expires", "2099-01-01").code == 0
    r = cli("trust", "add-signer", root, "--signer", keyset["signer-2"], "--root-key", "signer-3",
            "-o", tmp_path / "v2.json")
    assert r.code == 1
    assert r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'v2.json'}: version 2 is signed by 0 of the 1 required of its own root keys"
    ]
    assert not (tmp_path / "v2.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires", "2001-01-01"], "--expires 2001-01-01: is in the past"),
        (["--expires", "soon"], "--expires: 'soon' is not a date (YYYY-MM-DD) or an ISO 8601 time"),
    ],
)
def test_init_refusals(cli, keyset: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    r = cli("trust", "init", "-o", tmp_path / "root.json", "--signer", keyset["signer-1"], "--threshold", "1",
            "--root-key", "root-1", *args)
    assert r.code == 1
    assert r.stderr.strip() == f"error: {message}"


def test_init_with_a_missing_signer_file(cli, keyset: dict[str, Path], tmp_path: Path) -> None:
    r = cli("trust", "init", "-o", tmp_path / "root.json", "--signer", tmp_path / "nope.pub", "--threshold", "1",
            "--root-key", "root-1", "--expires", "2099-01-01")
    assert r.code == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.pub'}: public key file not found"


def test_show_missing_root(cli, tmp_path: Path) -> None:
    r = cli("trust", "show", tmp_path / "x.json")
    assert (r.code, r.stderr.strip()) == (1, f"error: {tmp_path / 'x.json'}: trust root not found")
