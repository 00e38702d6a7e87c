"""Escrow of the swarm unlock key to several Ed25519 key holders."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tvdeploy.errors import VerificationError
from tvdeploy.keys import escrow


def test_x25519_conversion_matches_private_derivation() -> None:
    for _ in range(5):
        k = Ed25519PrivateKey.generate()
        from_pub = escrow.x25519_public_from_ed25519(k.public_key())
        from_priv = escrow.x25519_private_from_ed25519(k).public_key()
        assert escrow._raw(from_pub) == escrow._raw(from_priv)


def test_any_recipient_opens_and_others_cannot() -> None:
    operator, officer, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    sealed = escrow.seal(b"SWMKEY-1-abc", [operator.public_key(), officer.public_key()], "unlock site=lab")
    assert b"SWMKEY" not in sealed
    assert escrow.open_sealed(sealed, operator) == b"SWMKEY-1-abc"
    assert escrow.open_sealed(sealed, officer) == b"SWMKEY-1-abc"
    with pytest.raises(VerificationError, match="not sealed to key"):
        escrow.open_sealed(sealed, stranger)


@pytest.mark.parametrize("field", ["ciphertext", "label", "wrapped_key"])
def test_tampered_envelope_refused(field: str) -> None:
    k = Ed25519PrivateKey.generate()
    doc = json.loads(escrow.seal(b"secret", [k.public_key()], "unlock"))
    if field == "wrapped_key":
        raw = bytearray(escrow._unb64(doc["recipients"][0]["wrapped_key"], "x"))
        raw[0] ^= 1
        doc["recipients"][0]["wrapped_key"] = escrow._b64(bytes(raw))
    elif field == "label":
        doc["label"] = "unlock other-site"
    else:
        raw = bytearray(escrow._unb64(doc["ciphertext"], "x"))
        raw[-1] ^= 1
        doc["ciphertext"] = escrow._b64(bytes(raw))
    with pytest.raises(VerificationError, match="tampered"):
        escrow.open_sealed(json.dumps(doc).encode(), k)


@pytest.mark.parametrize("blob", [b"", b"{", b"[]", b'{"format": "other"}', b"x" * (70 * 1024)])
def test_malformed_envelope_refused(blob: bytes) -> None:
    with pytest.raises(VerificationError):
        escrow.open_sealed(blob, Ed25519PrivateKey.generate())
