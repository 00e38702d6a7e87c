"""Helpers for chunk-folder tests: a signed bundle split into small chunks, and re-signing a
(possibly hostile) chunk index with chosen keys."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import bundlekit as bk
from tvdeploy.bundle import dsse, statement
from tvdeploy.bundle.chunkindex import PAYLOAD_TYPE, index_statement
from tvdeploy.bundle.chunksplit import split_bundle
from tvdeploy.keys.store import key_id

CHUNK = 4096


@dataclass
class Chunked:
    work: Path
    bundle: Path
    dir: Path
    root: Path
    keys: dict[str, Any]

    def chunk(self, i: int) -> Path:
        return sorted(p for p in self.dir.iterdir() if p.name.startswith("bundle."))[i]

    def snapshot(self) -> dict[str, tuple[int, int, bytes]]:
        """Every file of the chunk folder: (size, mtime_ns, content)."""
        out = {}
        for p in sorted(self.dir.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(self.dir))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
        return out


def make_chunked(work: Path, size: int = CHUNK, index_signers: tuple[str, ...] = ("signer-1", "signer-2"),
                 bundle_signers: tuple[str, ...] = ("signer-1", "signer-2")) -> Chunked:
    """Bundle signed by *bundle_signers*; trust root 2 of signer-1..3 (root key root-1); split into
    *size*-byte chunks with the index signed by *index_signers*."""
    work.mkdir(parents=True, exist_ok=True)
    keys = {name: bk.make_key(name)[0] for name in ("signer-1", "signer-2", "signer-3", "root-1", "outsider")}
    bundle = bk.make_bundle(work / "bundle.tar")
    for name in bundle_signers:
        bk.sign_with(bundle, keys[name])
    root = bk.make_trust(work / "root.json", [keys["signer-1"], keys["signer-2"], keys["signer-3"]], 2,
                         [keys["root-1"]])
    out = work / "chunks"
    split_bundle(bundle, size, out, [(keys[n], key_id(keys[n].public_key())) for n in index_signers])
    return Chunked(work, bundle, out, root, keys)


def resign(c: Chunked, index_bytes: bytes, signers: tuple[str, ...] = ("signer-1", "signer-2")) -> None:
    """Replace chunks.json with *index_bytes* and its signatures with ones by *signers*."""
    (c.dir / "chunks.json").write_bytes(index_bytes)
    shutil.rmtree(c.dir / "chunks.sig")
    (c.dir / "chunks.sig").mkdir()
    payload = statement.encode(index_statement(index_bytes))
    for name in signers:
        key = c.keys[name]
        kid = key_id(key.public_key())
        env = dsse.sign(PAYLOAD_TYPE, payload, key, kid)
        (c.dir / "chunks.sig" / f"{kid}.json").write_bytes(env.to_json())
