"""The OCI image layout inside a bundle tar: ``oci-layout``, ``blobs/sha256/<hex>``, ``index.json``.

Every blob is stored once across all images; ``index.json`` lists one manifest per image
reference, annotated ``org.opencontainers.image.ref.name`` so that
``skopeo inspect oci-archive:BUNDLE:<ref>`` finds it. Every file written is remembered with its
size and sha256 for the bundle's ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tvdeploy.bundle import tarout

log = logging.getLogger(__name__)

FORMAT = "tvdeploy-bundle/1"  # manifest.json format tag
BLOB_PREFIX = "blobs/sha256/"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
MAX_READBACK = 16 * 1024 * 1024


def json_bytes(doc: Any) -> bytes:
    """The stable byte form of a document we write (sorted keys, compact)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str


@dataclass
class LayoutWriter:
    """Writes the layout part of a bundle into *out*, an open, seekable, empty file."""

    out: BinaryIO
    files: dict[str, FileRecord] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)  # blob hex -> header offset
    refs: list[tuple[str, str, int]] = field(default_factory=list)  # (ref, manifest hex, size)
    # A delta: layer digests the site holds already. Such layers are hashed but not kept.
    skip: frozenset[str] = frozenset()
    skipped: dict[str, FileRecord] = field(default_factory=dict)  # blob hex -> what was left out
    # A delta with byte-level patches: given (out, data offset, hex, size) of a layer just
    # written, the (base hex, patch bytes) to ship instead, or None to keep the layer.
    patcher: Callable[[BinaryIO, int, str, int], tuple[str, bytes] | None] | None = None
    patched: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # layer hex -> (base, patch, size)
    # Told the offset before which the file is final (each new member's start): a compressor
    # following the writer (tvdeploy.bundle.compress.Follower).
    on_stable: Callable[[int], None] | None = None

    def start(self) -> None:
        self.add_file("oci-layout", json_bytes(OCI_LAYOUT))
        tarout.write_dir(self.out, "blobs")
        tarout.write_dir(self.out, "blobs/sha256")

    def stable(self) -> None:
        """Everything before the current position is final: later members never rewrite it."""
        if self.on_stable is not None:
            self.out.flush()  # the follower reads the file, not our buffer
            self.on_stable(self.out.tell())

    def add_file(self, path: str, data: bytes) -> FileRecord:
        self.stable()
        written = tarout.write_bytes(self.out, path, data)
        record = FileRecord(path, written.size, written.sha256)
        self.files[path] = record
        return record

    def has_blob(self, hexdigest: str) -> bool:
        """Whether the blob is stored (a layer shipped as a patch is not: see ``patched``)."""
        return hexdigest in self.offsets

    def add_blob(self, data: bytes, *, layer: bool = False) -> FileRecord:
        """Store *data* as a blob unless a blob with its digest is stored already (or, for a
        *layer* of a delta, is on the site already)."""
        hexdigest = hashlib.sha256(data).hexdigest()
        if layer and hexdigest in self.skip and hexdigest not in self.offsets:
            return self._skipped(hexdigest, len(data))
        if hexdigest in self.patched:
            return FileRecord(BLOB_PREFIX + hexdigest, len(data), hexdigest)
        if hexdigest not in self.offsets:
            offset = self.out.tell()
            self.add_file(BLOB_PREFIX + hexdigest, data)
            self.offsets[hexdigest] = offset
        return self.files[BLOB_PREFIX + hexdigest]

    def stream_blob(self, src: tarout.Source, size: int, progress: object | None = None, *,
                    layer: bool = False) -> FileRecord:
        """Stream *size* bytes of *src* into a blob; a blob already stored is dropped again
        (its bytes had to be read to learn the digest, but they are stored once). So is a
        *layer* the site holds already, when building a delta: the digest is only known once
        the bytes went by, and a name in the save stream is no proof of content."""
        self.stable()
        written = tarout.stream_blob(self.out, src, size, BLOB_PREFIX, progress)
        if written.sha256 in self.offsets:
            log.debug("blob %s stored already; dropping the copy", written.sha256[:12])
            tarout.discard_from(self.out, written.offset)
        elif layer and written.sha256 in self.skip:
            log.debug("layer %s is on the site already; not shipped", written.sha256[:12])
            tarout.discard_from(self.out, written.offset)
            return self._skipped(written.sha256, size)
        elif written.sha256 in self.patched:
            tarout.discard_from(self.out, written.offset)
        else:
            self.offsets[written.sha256] = written.offset
            self.files[BLOB_PREFIX + written.sha256] = FileRecord(
                BLOB_PREFIX + written.sha256, size, written.sha256
            )
            if layer and self.patcher is not None:
                self._try_patch(written, size)
        if written.sha256 in self.patched:
            return FileRecord(BLOB_PREFIX + written.sha256, size, written.sha256)
        return self.files[BLOB_PREFIX + written.sha256]

    def _try_patch(self, written: tarout.Written, size: int) -> None:
        """Replace the layer just written by a patch against a base on the site, if smaller."""
        assert self.patcher is not None
        data_offset = written.offset + len(tarout.header(BLOB_PREFIX + written.sha256, size))
        made = self.patcher(self.out, data_offset, written.sha256, size)
        self.out.seek(0, 2)
        if made is None:
            return
        base, patch = made
        log.debug("layer %s shipped as a %d-byte patch against %s", written.sha256[:12], len(patch), base[:12])
        tarout.discard_from(self.out, written.offset)
        del self.offsets[written.sha256]
        del self.files[BLOB_PREFIX + written.sha256]
        record = self.add_blob(patch)
        self.patched[written.sha256] = (base, record.sha256, size)

    def _skipped(self, hexdigest: str, size: int) -> FileRecord:
        record = FileRecord(BLOB_PREFIX + hexdigest, size, hexdigest)
        self.skipped.setdefault(hexdigest, record)
        return record

    def read_blob(self, hexdigest: str) -> bytes:
        """Read back a (small) blob already written, e.g. a config that was too large to keep."""
        record = self.files[BLOB_PREFIX + hexdigest]
        if record.size > MAX_READBACK:
            raise ValueError(f"blob {hexdigest[:12]} is too large to read back ({record.size} bytes)")
        end = self.out.tell()
        header_len = len(tarout.header(BLOB_PREFIX + hexdigest, record.size))
        self.out.seek(self.offsets[hexdigest] + header_len)
        data = self.out.read(record.size)
        self.out.seek(end)
        if hashlib.sha256(data).hexdigest() != hexdigest:
            raise ValueError(f"blob {hexdigest[:12]} changed on disk while writing")
        return data

    def add_ref(self, ref: str, manifest: FileRecord) -> None:
        if all(r[0] != ref for r in self.refs):
            self.refs.append((ref, manifest.sha256, manifest.size))

    def finish_index(self) -> FileRecord:
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": f"sha256:{hexdigest}",
                    "size": size,
                    "annotations": {REF_ANNOTATION: ref},
                }
                for ref, hexdigest, size in self.refs
            ],
        }
        return self.add_file("index.json", json_bytes(index))


def oci_manifest(config: FileRecord, layers: list[FileRecord]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": f"sha256:{config.sha256}", "size": config.size},
        "layers": [
            {"mediaType": LAYER_MEDIA_TYPE, "digest": f"sha256:{layer.sha256}", "size": layer.size}
            for layer in layers
        ],
    }
    return json_bytes(doc)
