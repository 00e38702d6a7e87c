"""Ed25519 signatures over canonical JSON, shared by records and checkpoints.

A signed document carries ``sig``: base64 of the Ed25519 signature over the canonical JSON of
the document without ``sig``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from tvdeploy.audit.canonical import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_FIELD = "sig"


def signed_bytes(doc: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in doc.items() if k != SIG_FIELD})


def sign(private_key: Ed25519PrivateKey, doc: dict[str, Any]) -> dict[str, Any]:
    """Return *doc* with its ``sig`` field."""
    sig = private_key.sign(signed_bytes(doc))
    return {**doc, SIG_FIELD: base64.b64encode(sig).decode("ascii")}


def verify(public_key: Ed25519PublicKey, doc: dict[str, Any]) -> bool:
    """True when ``doc['sig']`` is a valid signature of *public_key* over the rest of *doc*."""
    from cryptography.exceptions import InvalidSignature

    sig_text = doc.get(SIG_FIELD)
    if not isinstance(sig_text, str):
        return False
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(sig, signed_bytes(doc))
    except (InvalidSignature, ValueError):
        return False
    return True
