"""The chunk index (``chunks.json``) of a bundle split for removable media, and what signs it.

    {"format": "tvdeploy-chunks/1", "bundle": "release-1.tar", "size": N, "sha256": HEX,
     "chunk_size": S, "chunks": [{"name": "release-1.000", "size": S, "sha256": HEX}, ...]}

Parsing is strict because the index arrives on the same untrusted medium as the chunks: chunk
names are plain file names (no ``/``, no ``..``, no leading dot, never the index's own names),
unique, and the sizes must add up exactly (every chunk ``chunk_size`` bytes but the last), so an
index cannot point outside its folder or describe a different file than the one it names.

A signature is a DSSE envelope over an in-toto statement whose subject is the sha256 of the exact
``chunks.json`` bytes: the same envelope, payload type and trust checks as a bundle signature
(``tvdeploy.bundle.verify.judge``), with its own predicate type so that neither kind of signature
can stand in for the other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from tvdeploy.bundle import statement
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.bundle.layout import json_bytes

FORMAT = "tvdeploy-chunks/1"
INDEX_NAME = "chunks.json"
SIG_DIR = "chunks.sig"
PREDICATE_TYPE = "https://trueverit.io/tvdeploy/chunk-index/v1"
PAYLOAD_TYPE = statement.PAYLOAD_TYPE
MAX_INDEX = 16 * 1024 * 1024
MAX_CHUNKS = 100_000
MAX_SIGNATURES = 64
MAX_SIGNATURE = 64 * 1024
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
HEX64 = re.compile(r"[0-9a-f]{64}")
SIG_FILE = re.compile(r"([0-9a-f]{64})\.json")
RESERVED = {INDEX_NAME, SIG_DIR}
FIELDS = {"format", "bundle", "size", "sha256", "chunk_size", "chunks"}


class ChunkIndexError(ValueError):
    """A chunk index that is not exactly what tvdeploy writes (the caller names the file)."""


@dataclass(frozen=True)
class Chunk:
    name: str
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True)
class ChunkIndex:
    bundle: str
    size: int
    sha256: str
    chunk_size: int
    chunks: tuple[Chunk, ...]

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT, "bundle": self.bundle, "size": self.size, "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "chunks": [{"name": c.name, "size": c.size, "sha256": c.sha256} for c in self.chunks],
        }
        return json_bytes(doc) + b"\n"


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


def chunk_names(stem: str, count: int) -> list[str]:
    """``stem.000``, ``stem.001``, ...: at least three digits, more when there are more chunks,
    so names sort in order on any file manager."""
    width = max(3, len(str(count - 1)))
    return [f"{stem}.{i:0{width}d}" for i in range(count)]


def safe_stem(file_name: str) -> str:
    """A chunk-name stem from a bundle file name: ``release-1.tar`` -> ``release-1``."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", stem).lstrip("._-+") or "bundle"
    return stem[:180]


def safe_name(file_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", file_name).lstrip("._-+") or "bundle.tar"
    return name[:199]


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ChunkIndexError(message)


def _int(value: Any, where: str, minimum: int) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
          f"{where}: expected an integer >= {minimum}")
    return int(value)


def _hex(value: Any, where: str) -> str:
    _need(isinstance(value, str) and HEX64.fullmatch(value) is not None, f"{where}: expected 64 hex digits")
    return str(value)


def _file_name(value: Any, where: str) -> str:
    _need(isinstance(value, str), f"{where}: expected a file name")
    _need("/" not in value and "\\" not in value, f"{where}: {value!r} is a path, expected a plain file name")
    _need(value not in (".", "..") and not value.startswith("."), f"{where}: {value!r} is not a chunk file name")
    _need(FILE_NAME.fullmatch(value) is not None and value not in RESERVED,
          f"{where}: {value!r} is not a chunk file name (letters, digits, . _ - +)")
    return str(value)


def parse_index(data: bytes) -> ChunkIndex:
    """Decode and check ``chunks.json``; ChunkIndexError says what is wrong."""
    _need(len(data) <= MAX_INDEX, f"larger than {MAX_INDEX} bytes")
    try:
        doc = loads(data, limit=MAX_INDEX)
    except JsonError as exc:
        raise ChunkIndexError(str(exc)) from None
    _need(isinstance(doc, dict) and set(doc) == FIELDS, f"not a chunk index (expected keys {sorted(FIELDS)})")
    _need(doc["format"] == FORMAT, f"format: expected {FORMAT!r}")
    bundle = _file_name(doc["bundle"], "bundle")
    size = _int(doc["size"], "size", 1)
    total = _hex(doc["sha256"], "sha256")
    chunk_size = _int(doc["chunk_size"], "chunk_size", 1)
    items = doc["chunks"]
    _need(isinstance(items, list) and bool(items), "chunks: expected a non-empty list")
    _need(len(items) <= MAX_CHUNKS, f"chunks: more than {MAX_CHUNKS}")
    expected = chunk_count(size, chunk_size)
    _need(len(items) == expected,
          f"chunks: {len(items)} listed, but {size} bytes in chunks of {chunk_size} make {expected}")
    chunks: list[Chunk] = []
    seen: set[str] = set()
    offset = 0
    for i, item in enumerate(items):
        where = f"chunks[{i}]"
        _need(isinstance(item, dict) and set(item) == {"name", "size", "sha256"},
              f"{where}: expected {{name, size, sha256}}")
        name = _file_name(item["name"], f"{where}.name")
        # Case-folded: on FAT/exFAT media (most USB drives) two such names are one file.
        _need(name.lower() not in seen, f"{where}.name: {name!r} listed twice")
        seen.add(name.lower())
        csize = _int(item["size"], f"{where}.size", 1)
        want = chunk_size if i < expected - 1 else size - offset
        _need(csize == want, f"{where}.size: {csize} bytes, but the sizes only add up with {want}")
        chunks.append(Chunk(name, offset, csize, _hex(item["sha256"], f"{where}.sha256")))
        offset += csize
    return ChunkIndex(bundle, size, total, chunk_size, tuple(chunks))


def index_statement(index_bytes: bytes) -> dict[str, Any]:
    """What a chunk-index signature covers: the exact bytes of ``chunks.json``."""
    return {
        "_type": statement.STATEMENT_TYPE,
        "subject": [{"name": INDEX_NAME, "digest": {"sha256": hashlib.sha256(index_bytes).hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"format": FORMAT},
    }
