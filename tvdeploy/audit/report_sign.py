"""Detached Ed25519 signatures over the report's files, and their verification.

``FILE.sig`` is one JSON object: ``{"type": "tvdeploy-report-signature/1", "file": NAME,
"sha256": HEX, "key_id": HEX, "sig": BASE64}``; ``sig`` is Ed25519 over the file's raw bytes
(``sha256`` and ``key_id`` only make errors clear; the signature alone decides). A report folder
verifies when report.html and report.json (and report.pdf when present) each have a signature by
the given key that matches their bytes, and no signature is left without its file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import InputFileError, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_TYPE = "tvdeploy-report-signature/1"
REQUIRED = ("report.html", "report.json")
OPTIONAL = ("report.pdf",)
MAX_SIG = 4096
MAX_FILE = 512 * 1024 * 1024


def signature_doc(name: str, data: bytes, key: Ed25519PrivateKey, key_id: str) -> bytes:
    doc = {"type": SIG_TYPE, "file": name, "sha256": hashlib.sha256(data).hexdigest(), "key_id": key_id,
           "sig": base64.b64encode(key.sign(data)).decode("ascii")}
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def _read(path: Path, limit: int, what: str) -> bytes:
    try:
        if path.stat().st_size > limit:
            raise InputFileError(f"{path}: larger than {limit} bytes: not a {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise VerificationError(f"{path}: missing: the report has no {what} here") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _parse_sig(path: Path, name: str) -> dict[str, Any]:
    raw = _read(path, MAX_SIG, "signature")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError(f"{path}: not a report signature (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("type") != SIG_TYPE or \
            not all(isinstance(doc.get(k), str) for k in ("file", "sha256", "key_id", "sig")):
        raise VerificationError(f"{path}: not a report signature ({SIG_TYPE} with file, sha256, key_id, sig)")
    if doc["file"] != name:
        raise VerificationError(f"{path}: signs {doc['file']!r}, not {name}")
    return doc


def verify_file(directory: Path, name: str, public_key: Ed25519PublicKey, key_id: str) -> str:
    """The file's sha256 when ``NAME.sig`` is a valid signature of it by *public_key*; raises
    VerificationError naming the file otherwise."""
    from cryptography.exceptions import InvalidSignature

    path = directory / name
    data = _read(path, MAX_FILE, "report file")
    sig_path = directory / f"{name}.sig"
    doc = _parse_sig(sig_path, name)
    if doc["key_id"] != key_id:
        raise VerificationError(f"{sig_path}: signed by key {doc['key_id'][:16]}, not by the given key "
                                f"{key_id[:16]}")
    try:
        public_key.verify(base64.b64decode(doc["sig"], validate=True), data)
    except (binascii.Error, ValueError, InvalidSignature):
        digest = hashlib.sha256(data).hexdigest()
        why = "the file was changed after it was signed" if digest != doc["sha256"] else "the signature is damaged"
        raise VerificationError(f"{path}: signature does not verify with key {key_id[:16]}: {why}") from None
    return hashlib.sha256(data).hexdigest()


def verify_dir(directory: Path, public_key: Ed25519PublicKey) -> dict[str, str]:
    """name -> sha256 of every report file, each verified; the first failure raises."""
    from tvdeploy.keys.store import key_id as key_id_of

    if not directory.is_dir():
        raise InputFileError(f"{directory}: not a folder (the report folder given to audit report -o)")
    kid = key_id_of(public_key)
    names = list(REQUIRED) + [n for n in OPTIONAL if (directory / n).exists() or (directory / f"{n}.sig").exists()]
    return {name: verify_file(directory, name, public_key, kid) for name in names}
