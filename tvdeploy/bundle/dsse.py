"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1) with Ed25519.

The signature covers PAE(payloadType, payload), never the JSON envelope, so re-serializing an
envelope cannot change what was signed. Parsing is strict: an envelope that is not exactly the
shape below is refused rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_ENVELOPE = 16 * 1024 * 1024  # bundle statements list every blob


class EnvelopeError(ValueError):
    """An envelope that cannot be decoded (the caller names the file)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body,
    LEN being the ASCII decimal byte length without leading zeros."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        doc = {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(payload_type: str, payload: bytes, key: Ed25519PrivateKey, keyid: str) -> Envelope:
    return Envelope(payload_type, payload, (Signature(keyid, key.sign(pae(payload_type, payload))),))


def verify(envelope: Envelope, signature: Signature, public_key: Ed25519PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature.sig, pae(envelope.payload_type, envelope.payload))
    except InvalidSignature:
        return False
    return True


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} is not a string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise EnvelopeError(f"{what} is not valid base64") from None


def parse(data: bytes) -> Envelope:
    """Decode a JSON envelope; raises EnvelopeError saying what is wrong."""
    from tvdeploy.bundle.jsonsafe import JsonError, loads

    if len(data) > MAX_ENVELOPE:
        raise EnvelopeError(f"envelope larger than {MAX_ENVELOPE} bytes")
    try:
        doc = loads(data)
    except JsonError as exc:
        raise EnvelopeError(str(exc)) from None
    if not isinstance(doc, dict) or set(doc) != {"payload", "payloadType", "signatures"}:
        raise EnvelopeError("not a DSSE envelope (expected payload, payloadType, signatures)")
    payload_type = doc["payloadType"]
    if not isinstance(payload_type, str):
        raise EnvelopeError("payloadType is not a string")
    payload = _b64(doc["payload"], "payload")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise EnvelopeError("signatures is not a non-empty list")
    out = []
    for i, item in enumerate(sigs):
        if not isinstance(item, dict) or set(item) != {"keyid", "sig"} or not isinstance(item["keyid"], str):
            raise EnvelopeError(f"signatures[{i}] is not {{keyid, sig}}")
        out.append(Signature(item["keyid"], _b64(item["sig"], f"signatures[{i}].sig")))
    return Envelope(payload_type, payload, tuple(out))
