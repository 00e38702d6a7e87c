"""Trust roots: version 1 self-signed by its root keys, N+1 signed by N's and its own, expiry."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tvdeploy.bundle import trust
from tvdeploy.errors import InputFileError, TvdeployError
from tvdeploy.keys.store import key_id

NOW = datetime(2026, 11, 28, tzinfo=UTC)
LATER = NOW + timedelta(days=365)


def keys(n: int) -> list[Ed25519PrivateKey]:
    return [Ed25519PrivateKey.generate() for _ in range(n)]


def chain_of(signers: list[Ed25519PrivateKey], roots: list[Ed25519PrivateKey], threshold: int = 2,
             root_threshold: int | None = None) -> list[trust.Version]:
    return trust.init_chain(signers=[k.public_key() for k in signers], threshold=threshold, root_keys=roots,
                            root_threshold=root_threshold, expires=LATER, now=NOW)


def roundtrip(tmp_path: Path, chain: list[trust.Version]) -> Path:
    path = tmp_path / "root.json"
    path.write_bytes(trust.chain_document(chain))
    return path


def test_version_1_round_trips_and_verifies(tmp_path: Path) -> None:
    signers, roots = keys(3), keys(2)
    path = roundtrip(tmp_path, chain_of(signers, roots))
    chain, current = trust.load_verified(path, NOW)
    assert current.version == 1 and current.threshold == 2 and current.root_threshold == 2
    assert set(current.signers) == {key_id(k.public_key()) for k in signers}
    assert current.signers[key_id(signers[0].public_key())].roles == ("bundle",)


def test_add_signer_then_revoke(tmp_path: Path) -> None:
    signers, roots, extra = keys(2), keys(2), keys(1)
    chain = chain_of(signers, roots)
    chain = trust.next_version(chain, sign_with=roots, where="v2", add=[extra[0].public_key()], now=NOW)
    revoked = key_id(signers[0].public_key())
    chain = trust.next_version(chain, sign_with=roots, where="v3", revoke=[revoked], now=NOW)
    _, current = trust.load_verified(roundtrip(tmp_path, chain), NOW)
    assert current.version == 3
    assert revoked in current.revoked and revoked not in current.signers
    assert key_id(extra[0].public_key()) in current.signers


def test_next_version_needs_the_old_root_keys() -> None:
    signers, roots = keys(2), keys(2)
    chain = chain_of(signers, roots)
    with pytest.raises(TvdeployError, match="version 2 is signed by 1 of the 2 required of its own root keys"):
        trust.next_version(chain, sign_with=roots[:1], where="v2", add=[keys(1)[0].public_key()], now=NOW)


def test_version_not_signed_by_its_predecessor_is_refused(tmp_path: Path) -> None:
    # Someone with only new keys writes a "version 2" trusting their own signer.
    signers, roots, attacker = keys(2), keys(1), keys(2)
    v1 = chain_of(signers, roots)[0]
    forged = trust.make_version(version=2, expires=LATER, threshold=1,
                                signers={key_id(attacker[0].public_key()): trust.signer_from_public(
                                    attacker[0].public_key())},
                                root_keys={key_id(attacker[1].public_key()): trust._hex(attacker[1].public_key())},
                                root_threshold=1, revoked=[], sign_with=[attacker[1]])
    path = roundtrip(tmp_path, [v1, forged])
    with pytest.raises(TvdeployError) as info:
        trust.load_verified(path, NOW)
    assert info.value.message == (f"{path}: version 2 is not signed by its predecessor: 0 of the 1 required "
                                  "root keys of version 1")


def test_expired_trust_root_is_refused(tmp_path: Path) -> None:
    path = roundtrip(tmp_path, chain_of(keys(2), keys(1)))
    with pytest.raises(TvdeployError, match=r"trust root version 1 expired on 2027-11-28T00:00:00Z"):
        trust.load_verified(path, LATER + timedelta(seconds=1))


def test_only_the_newest_expiry_counts(tmp_path: Path) -> None:
    roots = keys(1)
    chain = chain_of(keys(2), roots)
    chain = trust.next_version(chain, sign_with=roots, where="v2", expires=LATER + timedelta(days=365), now=NOW)
    _, current = trust.load_verified(roundtrip(tmp_path, chain), LATER + timedelta(days=1))
    assert current.version == 2


def _edit(path: Path, edit: object) -> Path:
    doc = json.loads(path.read_bytes())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    return path


def test_tampered_signed_part_fails_the_signature(tmp_path: Path) -> None:
    path = roundtrip(tmp_path, chain_of(keys(2), keys(1)))
    _edit(path, lambda d: d["versions"][0]["signed"].update(threshold=1))
    with pytest.raises(TvdeployError, match="version 1 is signed by 0 of the 1 required of its own root keys"):
        trust.load_verified(path, NOW)


def test_one_root_key_signing_twice_counts_once(tmp_path: Path) -> None:
    roots = keys(2)
    path = roundtrip(tmp_path, chain_of(keys(2), roots))
    def dup(d: dict) -> None:
        sigs = d["versions"][0]["signatures"]
        sigs[1] = dict(sigs[0])
    _edit(path, dup)
    with pytest.raises(TvdeployError, match="signed by 1 of the 2 required"):
        trust.load_verified(path, NOW)


def test_key_id_must_be_the_hash_of_the_key(tmp_path: Path) -> None:
    signers = keys(2)
    path = roundtrip(tmp_path, chain_of(signers, keys(1)))
    other = trust._hex(keys(1)[0].public_key())
    _edit(path, lambda d: next(iter(d["versions"][0]["signed"]["signers"].values())).update(public_key=other))
    with pytest.raises(TvdeployError, match="key id is not the sha256 of its public key"):
        trust.load_verified(path, NOW)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "malformed JSON"),
        (b"[]", "not a trust root"),
        (b'{"versions": []}', "not a trust root"),
        (b'{"versions": [{"signed": {}, "signatures": []}]}', "signed: expected keys"),
        (b'{"versions": [1], "versions": [2]}', "duplicate key"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_trust_roots(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "root.json"
    path.write_bytes(content)
    with pytest.raises(TvdeployError, match=message):
        trust.load_verified(path, NOW)


def test_oversized_and_missing_trust_roots(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="trust root not found"):
        trust.load_chain(tmp_path / "none.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (trust.MAX_FILE + 1))
    with pytest.raises(InputFileError, match="larger than"):
        trust.load_chain(big)


def test_threshold_must_be_reachable() -> None:
    with pytest.raises(TvdeployError, match="--threshold 3: must be between 1 and the 2"):
        chain_of(keys(2), keys(1), threshold=3)
    chain = chain_of(keys(2), keys(1), threshold=2)
    with pytest.raises(TvdeployError, match="threshold 2 cannot be met by the 1 remaining"):
        trust.next_version(chain, sign_with=[], where="v2", revoke=[next(iter(chain[0].signers))], now=NOW)


def test_revoked_key_cannot_come_back() -> None:
    signers, roots = keys(3), keys(1)
    chain = chain_of(signers, roots, threshold=1)
    kid = key_id(signers[0].public_key())
    chain = trust.next_version(chain, sign_with=roots, where="v2", revoke=[kid], now=NOW)
    with pytest.raises(TvdeployError, match="was revoked"):
        trust.next_version(chain, sign_with=roots, where="v3", add=[signers[0].public_key()], now=NOW)


def test_signature_base64_checked(tmp_path: Path) -> None:
    path = roundtrip(tmp_path, chain_of(keys(2), keys(1)))
    _edit(path, lambda d: d["versions"][0]["signatures"][0].update(sig="!!" + base64.b64encode(b"x").decode()))
    with pytest.raises(TvdeployError, match="sig is not base64"):
        trust.load_verified(path, NOW)
