"""Escrow a secret (the swarm unlock key) encrypted to one or more Ed25519 key holders.

Operators already hold Ed25519 keys (key store) and security officers hand over Ed25519 public
key files, so escrow reuses them: each Ed25519 key maps to an X25519 key (the birational map
libsodium's crypto_sign_ed25519_pk_to_curve25519 uses), a random file key encrypts the secret
(AES-256-GCM), and the file key is wrapped for each recipient with an ephemeral X25519 exchange
+ HKDF-SHA256 + AES-GCM. Any ONE recipient can open it, so losing a laptop loses nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

_P = 2**255 - 19
_INFO = b"tvdeploy-escrow-v1"
FORMAT = "tvdeploy-escrow/v1"
MAX_ENVELOPE = 64 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        raise VerificationError(f"escrow envelope: {what} is not base64") from None


def x25519_public_from_ed25519(public_key: Ed25519PublicKey) -> X25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from tvdeploy.keys.store import raw_public_bytes

    raw = bytearray(raw_public_bytes(public_key))
    raw[31] &= 0x7F  # the top bit is the sign of x; the map needs y only
    y = int.from_bytes(raw, "little")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))


def x25519_private_from_ed25519(private_key: Ed25519PrivateKey) -> X25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    # X25519 clamps the scalar itself; Ed25519's secret scalar is the first half of SHA-512(seed).
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def _kek(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def _raw(pub: X25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(secret: bytes, recipients: list[Ed25519PublicKey], label: str) -> bytes:
    """Encrypt *secret* so that any one of *recipients* can open it; returns JSON bytes.
    *label* (e.g. "swarm-unlock-key site=plant-a") is authenticated, not secret."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tvdeploy.keys.store import key_id

    if not recipients:
        raise ValueError("escrow needs at least one recipient")
    file_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    body = AESGCM(file_key).encrypt(nonce, secret, label.encode())
    wrapped = []
    for recipient in recipients:
        rid = key_id(recipient)
        rpub = _raw(x25519_public_from_ed25519(recipient))
        eph = X25519PrivateKey.generate()
        epub = _raw(eph.public_key())
        kek = _kek(eph.exchange(x25519_public_from_ed25519(recipient)), epub, rpub)
        wnonce = os.urandom(12)
        wrapped.append(
            {
                "key_id": rid,
                "ephemeral": _b64(epub),
                "nonce": _b64(wnonce),
                "wrapped_key": _b64(AESGCM(kek).encrypt(wnonce, file_key, rid.encode())),
            }
        )
    doc = {"format": FORMAT, "label": label, "recipients": wrapped, "nonce": _b64(nonce), "ciphertext": _b64(body)}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def recipients_of(envelope: bytes) -> list[str]:
    return [str(r.get("key_id")) for r in _parse(envelope)["recipients"]]


def _parse(envelope: bytes) -> dict[str, Any]:
    if len(envelope) > MAX_ENVELOPE:
        raise VerificationError("escrow envelope: too large")
    try:
        doc = json.loads(envelope)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError("escrow envelope: not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("recipients"), list):
        raise VerificationError(f"escrow envelope: not a {FORMAT} document")
    return doc


def open_sealed(envelope: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Decrypt with the recipient's Ed25519 private key; raises VerificationError otherwise."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tvdeploy.keys.store import key_id

    doc = _parse(envelope)
    me = key_id(private_key.public_key())
    entry = next((r for r in doc["recipients"] if isinstance(r, dict) and r.get("key_id") == me), None)
    if entry is None:
        raise VerificationError(f"escrow envelope: not sealed to key {me[:16]}")
    xpriv = x25519_private_from_ed25519(private_key)
    epub = _unb64(entry.get("ephemeral"), "ephemeral")
    try:
        shared = xpriv.exchange(X25519PublicKey.from_public_bytes(epub))
        kek = _kek(shared, epub, _raw(xpriv.public_key()))
        file_key = AESGCM(kek).decrypt(_unb64(entry.get("nonce"), "nonce"),
                                       _unb64(entry.get("wrapped_key"), "wrapped_key"), me.encode())
        return AESGCM(file_key).decrypt(_unb64(doc.get("nonce"), "nonce"),
                                        _unb64(doc.get("ciphertext"), "ciphertext"),
                                        str(doc.get("label", "")).encode())
    except (InvalidTag, ValueError):
        raise VerificationError("escrow envelope: tampered or not decryptable with this key") from None
