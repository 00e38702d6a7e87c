"""`tvdeploy keys generate | list | export-public`, and damaged key files."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tvdeploy.audit.verify import verify_log


def _keys(home: Path) -> Path:
    return home / "keys"


def _raw_pub(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(path.read_bytes())
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    # Each CLI call below stands for a separate process: no key cached between them.
    from tvdeploy.audit.recorder import clear_key_cache

    clear_key_cache()
    yield
    clear_key_cache()


class _Tty:
    """sys.stdin stand-in that claims to be a terminal (no real TTY under pytest)."""

    def isatty(self) -> bool:
        return True


# -- generate -----------------------------------------------------------------------------------


def test_generate_unencrypted(cli, isolated_home: Path) -> None:
    r = cli("keys", "generate", "operator", "--no-passphrase")
    assert r.code == 0, r.stderr
    priv, pub = _keys(isolated_home) / "operator.key", _keys(isolated_home) / "operator.pub"
    assert priv.stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PRIVATE KEY" in priv.read_bytes()
    assert "stored unencrypted" in r.stderr
    kid = hashlib.sha256(_raw_pub(pub)).hexdigest()
    assert f"key id {kid}" in r.stdout


def test_generate_encrypted_from_env(cli, isolated_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("OP_PASS", "a long operator passphrase")
    r = cli("keys", "generate", "operator", "--passphrase", "env:OP_PASS")
    assert r.code == 0, r.stderr
    priv = _keys(isolated_home) / "operator.key"
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    assert priv.stat().st_mode & 0o777 == 0o600
    assert b"a long operator passphrase" not in priv.read_bytes()


def test_generate_encrypted_from_file(cli, isolated_home: Path, tmp_path: Path) -> None:
    (tmp_path / "pp").write_text("file passphrase 123\n")
    r = cli("keys", "generate", "operator", "--passphrase", f"file:{tmp_path / 'pp'}")
    assert r.code == 0, r.stderr
    from tvdeploy.config.secrets import Secret
    from tvdeploy.keys.store import load_private_key

    load_private_key("operator", Secret("file passphrase 123"))


def test_generation_is_audited_and_verifies(cli, isolated_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PP", "operator passphrase")
    assert cli("keys", "generate", "operator", "--passphrase", "env:PP").code == 0
    monkeypatch.setenv("TVDEPLOY_KEY_PASSPHRASE", "env:PP")  # unlocks the operator key to sign
    assert cli("keys", "generate", "signer-1", "--no-passphrase").code == 0
    assert cli("keys", "export-public", "operator", "-o", tmp_path / "op.pub").code == 0
    from tvdeploy.keys.store import read_public_key_file

    log = isolated_home / "audit" / "audit.log"
    result = verify_log(log, read_public_key_file(tmp_path / "op.pub"))
    assert result.valid and result.records == 2
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert [r["objects"][0]["name"] for r in records] == ["operator", "signer-1"]
    assert all(r["event"] == "key.generate" for r in records)
    assert b"operator passphrase" not in log.read_bytes()


def test_prompts_twice_on_a_terminal(cli, isolated_home: Path, monkeypatch) -> None:
    answers = iter(["typed passphrase 1", "typed passphrase 1"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", _Tty())
    r = cli("keys", "generate", "operator")
    assert r.code == 0, r.stderr
    assert b"ENCRYPTED" in (_keys(isolated_home) / "operator.key").read_bytes()
    # The record was signed without a second prompt: the iterator is exhausted, a third call fails.
    assert (isolated_home / "audit" / "audit.log").exists()


def test_prompt_mismatch_writes_nothing(cli, isolated_home: Path, monkeypatch) -> None:
    answers = iter(["first passphrase", "second passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", _Tty())
    r = cli("keys", "generate", "operator")
    assert r.code == 1 and r.stderr == "error: the passphrases do not match\n"
    assert not _keys(isolated_home).exists() or not any(_keys(isolated_home).iterdir())


def test_no_terminal_no_passphrase_is_refused_with_hint(cli, isolated_home: Path) -> None:
    r = cli("keys", "generate", "operator")
    assert r.code == 1
    assert r.stderr.count("\n") == 1 and "--no-passphrase" in r.stderr and "env:VAR" in r.stderr
    assert not (_keys(isolated_home) / "operator.key").exists()


def test_both_passphrase_options_is_a_usage_error(cli) -> None:
    assert cli("keys", "generate", "operator", "--no-passphrase", "--passphrase", "env:X").code == 64


def test_missing_passphrase_variable(cli, isolated_home: Path) -> None:
    r = cli("keys", "generate", "operator", "--passphrase", "env:TVDEPLOY_TEST_UNSET")
    assert r.code == 1 and "TVDEPLOY_TEST_UNSET is not set" in r.stderr
    assert not (_keys(isolated_home) / "operator.key").exists()


def test_existing_key_is_not_overwritten(cli, operator_key, isolated_home: Path) -> None:
    before = (_keys(isolated_home) / "operator.key").read_bytes()
    r = cli("keys", "generate", "operator", "--no-passphrase")
    assert r.code == 1 and "already exists" in r.stderr
    assert (_keys(isolated_home) / "operator.key").read_bytes() == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "x" * 65, "op\n", "-dash"])
def test_bad_key_names(cli, name: str) -> None:
    r = cli("keys", "generate", name, "--no-passphrase")
    assert r.code in (1, 64)
    assert "Traceback" not in r.stderr


def test_operator_key_comes_first(cli, isolated_home: Path) -> None:
    r = cli("keys", "generate", "signer-1", "--no-passphrase")
    assert r.code == 1 and "tvdeploy keys generate operator" in r.stderr
    assert not (_keys(isolated_home) / "signer-1.key").exists()


def test_wrong_operator_passphrase_is_one_line(cli, isolated_home: Path, monkeypatch) -> None:
    from tvdeploy.audit.recorder import clear_key_cache

    monkeypatch.setenv("PP", "the right passphrase")
    assert cli("keys", "generate", "operator", "--passphrase", "env:PP").code == 0
    monkeypatch.setenv("WRONG", "not the right one")
    monkeypatch.setenv("TVDEPLOY_KEY_PASSPHRASE", "env:WRONG")
    clear_key_cache()
    r = cli("keys", "generate", "signer-1", "--no-passphrase")
    assert r.code == 1
    assert r.stderr == (f"error: key 'operator': wrong passphrase or damaged key file "
                        f"{_keys(isolated_home) / 'operator.key'}\n")
    assert not (_keys(isolated_home) / "signer-1.key").exists()  # nothing made before unlocking


# -- list / export-public -----------------------------------------------------------------------


def test_list(cli, operator_key, monkeypatch) -> None:
    monkeypatch.setenv("PP", "signer passphrase")
    assert cli("keys", "generate", "signer-1", "--passphrase", "env:PP").code == 0
    r = cli("keys", "list", "--json")
    assert r.code == 0
    keys = json.loads(r.stdout)["keys"]
    assert [(k["name"], k["encrypted"]) for k in keys] == [("operator", False), ("signer-1", True)]
    assert all(len(k["key_id"]) == 64 for k in keys)
    text = cli("keys", "list")
    assert "signer-1" in text.stdout and "yes" in text.stdout


def test_list_empty(cli) -> None:
    r = cli("keys", "list")
    assert r.code == 0 and "no keys yet" in r.stdout


def test_export_public(cli, operator_key, isolated_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "op.pub"
    r = cli("keys", "export-public", "operator", "-o", out)
    assert r.code == 0, r.stderr
    assert out.read_bytes() == (_keys(isolated_home) / "operator.pub").read_bytes()
    assert b"PRIVATE" not in out.read_bytes()
    again = cli("keys", "export-public", "operator", "-o", out)
    assert again.code == 1 and "already exists" in again.stderr
    assert cli("keys", "export-public", "operator", "-o", out, "--force").code == 0


def test_export_public_errors(cli, operator_key, tmp_path: Path) -> None:
    r = cli("keys", "export-public", "nobody", "-o", tmp_path / "x.pub")
    assert r.code == 1 and "no key named 'nobody'" in r.stderr
    r = cli("keys", "export-public", "operator", "-o", tmp_path / "missing" / "x.pub")
    assert r.code == 1 and "does not exist" in r.stderr
    r = cli("keys", "export-public", "operator", "-o", tmp_path)
    assert r.code == 1 and "is a directory" in r.stderr


# -- damaged key files --------------------------------------------------------------------------


def _rsa_pems() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def _damage(kind: str, good: bytes) -> bytes:
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "not-pem":
        return b"this is not a key\n"
    if kind == "oversized":
        return good + b"\n" + b"A" * 20_000
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "not-pem", "rsa", "oversized"])
def test_damaged_operator_private_key(cli, operator_key, isolated_home: Path, kind: str) -> None:
    priv = _keys(isolated_home) / "operator.key"
    priv.write_bytes(_rsa_pems()[0] if kind == "rsa" else _damage(kind, priv.read_bytes()))
    r = cli("keys", "generate", "signer-1", "--no-passphrase")  # must unlock the operator key
    assert r.code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and str(priv) in r.stderr
    expected = {"truncated": "damaged key file", "not-pem": "damaged key file",
                "rsa": "not an Ed25519 private key", "oversized": "too large"}[kind]
    assert expected in r.stderr
    assert not (_keys(isolated_home) / "signer-1.key").exists()


@pytest.mark.parametrize("kind", ["truncated", "not-pem", "rsa", "oversized"])
def test_damaged_public_key_file(cli, operator_key, isolated_home: Path, tmp_path: Path, kind: str) -> None:
    from tvdeploy.audit.recorder import global_log_path, record_global

    record_global("a.b")
    good = (_keys(isolated_home) / "operator.pub").read_bytes()
    bad = tmp_path / "bad.pub"
    bad.write_bytes(_rsa_pems()[1] if kind == "rsa" else _damage(kind, good))
    r = cli("audit", "verify", global_log_path(), "--key", bad)
    assert r.code == 1
    expected = {"truncated": "not a PEM public key", "not-pem": "not a PEM public key",
                "rsa": "not an Ed25519 public key", "oversized": "public key file is larger than 16384 bytes"}[kind]
    assert r.stderr == f"error: {bad}: {expected}\n"


def test_private_key_readable_by_others_is_refused(cli, operator_key, isolated_home: Path) -> None:
    priv = _keys(isolated_home) / "operator.key"
    priv.chmod(0o644)
    r = cli("keys", "generate", "signer-1", "--no-passphrase")
    assert r.code == 1 and "chmod 600" in r.stderr
