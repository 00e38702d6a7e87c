"""Append a signature to a bundle without rewriting its blobs.

The bundle is read and checked in full first (a signature vouches for what was checked, not for
what the file claims). The new member ``signatures/<keyid>-<n>.json`` is then written where the
end-of-archive blocks were, followed by new end blocks: only the tail of the file changes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tvdeploy.bundle import dsse, statement, tarout
from tvdeploy.bundle.reader import MAX_SIGNATURE, Bundle, read_bundle
from tvdeploy.errors import RefusedError, VerificationError
from tvdeploy.reporting import Reporter

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class Signed:
    path: Path
    key_id: str
    member: str
    manifest_sha256: str


def signature_name(bundle: Bundle, key_id: str) -> str:
    taken = [int(m.group(1)) for name in bundle.signatures
             if (m := re.fullmatch(rf"signatures/{key_id}-(\d+)\.json", name))]
    return f"signatures/{key_id}-{max(taken, default=0) + 1}.json"


def append_member(bundle: Bundle, name: str, data: bytes) -> None:
    """Write member *name* at the bundle's end-of-archive offset, then new end blocks."""
    try:
        _append(bundle, name, data)
    except OSError as exc:
        raise RefusedError(f"{bundle.path}: cannot append the signature: {exc.strerror or exc}") from None


def _append(bundle: Bundle, name: str, data: bytes) -> None:
    with open(bundle.path, "r+b") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size != bundle.size:
            raise RefusedError(f"{bundle.path}: changed while being signed; sign again")
        fh.seek(bundle.end_offset)
        if fh.read(2 * tarout.BLOCK) != tarout.END_OF_ARCHIVE:
            raise RefusedError(f"{bundle.path}: changed while being signed; sign again")
        tail = tarout.header(name, len(data)) + data + tarout.padding(len(data)) + tarout.END_OF_ARCHIVE
        fh.seek(bundle.end_offset)
        fh.write(tail)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def sign_bundle(path: Path, key: Ed25519PrivateKey, key_id: str,
                reporter: Reporter | None = None) -> Signed:
    bundle = read_bundle(path, reporter=reporter)
    payload = statement.encode(statement.for_bundle(bundle))
    for name, env in bundle.signatures.items():
        if any(s.keyid == key_id for s in env.signatures) and env.payload == payload:
            raise RefusedError(f"{path}: already signed by key {key_id[:16]} ({name})")
    envelope = dsse.sign(statement.PAYLOAD_TYPE, payload, key, key_id)
    if not dsse.verify(envelope, envelope.signatures[0], key.public_key()):
        raise VerificationError("the new signature does not verify (key store damaged?)")
    name = signature_name(bundle, key_id)
    data = envelope.to_json()
    if len(data) > MAX_SIGNATURE:
        raise RefusedError(f"{path}: too many blobs to sign ({len(bundle.blob_digests)}): the signature would "
                           f"exceed {MAX_SIGNATURE} bytes")
    append_member(bundle, name, data)
    return Signed(Path(path), key_id, name, bundle.manifest_sha256)
