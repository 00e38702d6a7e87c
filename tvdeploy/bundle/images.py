"""A verified bundle's images, read back by blob digest: what an import sends (and what it checks).

``BundleFile`` gives random access to the blobs of a bundle file or chunk folder that passed
verification, re-hashing every blob as it is read, so a bundle swapped after verification is
caught; ``BundleImage`` is one service's image in it (manifest, config, layers).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from tvdeploy.bundle.chunkio import ChunkedReader
from tvdeploy.bundle.dockerload import LoadImage
from tvdeploy.bundle.layout import BLOB_PREFIX
from tvdeploy.errors import VerificationError

if TYPE_CHECKING:
    from tvdeploy.bundle.chunkbundle import PathVerified
    from tvdeploy.bundle.reader import Bundle, Patch

READ = 1024 * 1024


@dataclass(frozen=True)
class BundleImage:
    service: str
    reference: str  # e.g. trueverit/cloud:1
    manifest_hex: str
    manifest: bytes
    config_hex: str
    config: bytes
    layers: tuple[tuple[str, int], ...]

    @property
    def repo(self) -> str:
        ref = self.reference.split("@", 1)[0]
        name, _, tag = ref.rpartition(":")
        return name if name and "/" not in tag else ref

    @property
    def tag(self) -> str:
        ref = self.reference.split("@", 1)[0]
        name, _, tag = ref.rpartition(":")
        return tag if name and "/" not in tag else "latest"

    @property
    def digest(self) -> str:
        return f"sha256:{self.manifest_hex}"

    @property
    def blobs(self) -> list[tuple[str, int]]:
        return [(self.config_hex, len(self.config)), *self.layers]

    @property
    def size(self) -> int:
        return sum(size for _h, size in self.blobs)

    def load_image(self) -> LoadImage:
        return LoadImage(self.reference.split("@", 1)[0], self.config_hex, self.config, self.layers)


class BundleFile:
    """Random access to a verified bundle (file or chunk folder) by blob digest."""

    def __init__(self, verified: PathVerified) -> None:
        self.verified = verified
        self.bundle: Bundle = verified.verified.bundle
        # node-load: patched layers rebuilt on the operator's machine, layer hex -> file
        self.rebuilt: dict[str, Path] = {}

    def open(self) -> BinaryIO:
        """The plain bundle tar (a compressed bundle is decompressed on the fly, with seeks)."""
        from tvdeploy.bundle.compress import open_plain

        if self.verified.chunks is not None:
            raw = cast(BinaryIO, ChunkedReader(Path(self.bundle.path), self.verified.chunks.index))
        else:
            raw = open(self.bundle.path, "rb")  # noqa: SIM115 - the caller closes it
        return open_plain(raw, str(self.bundle.path)) if self.bundle.compressed else raw

    @property
    def patches(self) -> dict[str, Patch]:
        """Layers shipped as byte-level patches: rebuilt layer hex -> Patch (base, patch, size)."""
        return self.bundle.patches

    @property
    def shipped(self) -> frozenset[str]:
        """Hex digests of the blobs this bundle carries (a delta carries only some)."""
        return frozenset(self.bundle.blob_digests)

    def where(self, hexd: str) -> tuple[int, int]:
        name = BLOB_PREFIX + hexd
        return self.bundle.data_offsets[name], self.bundle.files[name].size

    def read_small(self, fh: BinaryIO, hexd: str) -> bytes:
        offset, size = self.where(hexd)
        fh.seek(offset)
        data = fh.read(size)
        if hashlib.sha256(data).hexdigest() != hexd:
            raise VerificationError(f"{self.bundle.path}: blobs/sha256/{hexd}: changed after verification")
        return data

    def chunks(self, fh: BinaryIO, hexd: str) -> Iterator[bytes]:
        """The bytes of blob *hexd*, re-hashed; a mismatch at the end raises."""
        offset, size = self.where(hexd)
        fh.seek(offset)
        h = hashlib.sha256()
        remaining = size
        while remaining:
            data = fh.read(min(READ, remaining))
            if not data:
                raise VerificationError(f"{self.bundle.path}: blobs/sha256/{hexd}: truncated after verification")
            h.update(data)
            remaining -= len(data)
            yield data
        if h.hexdigest() != hexd:
            raise VerificationError(f"{self.bundle.path}: blobs/sha256/{hexd}: changed after verification")

    def images(self) -> list[BundleImage]:
        out = []
        with self.open() as fh:
            for svc, img in self.bundle.release["images"].items():
                mhex = img["digest"].removeprefix("sha256:")
                manifest = self.read_small(fh, mhex)
                doc = json.loads(manifest)
                chex = doc["config"]["digest"].removeprefix("sha256:")
                layers = tuple((d["digest"].removeprefix("sha256:"), int(d["size"])) for d in doc["layers"])
                out.append(BundleImage(svc, img["reference"], mhex, manifest, chex, self.read_small(fh, chex),
                                       layers))
        return out


def needed_base(images: list[BundleImage], shipped: frozenset[str],
                patches: dict[str, Patch] | None = None) -> dict[str, list[str]]:
    """Blobs the release uses but the bundle does not ship (a delta), and the bases its
    *patches* apply to, instead of the layers they rebuild: digest -> services."""
    patches = patches or {}
    needed: dict[str, list[str]] = {}
    for img in images:
        for hexd, _size in img.blobs:
            if hexd in patches:
                needed.setdefault(f"sha256:{patches[hexd].base}", []).append(img.service)
            elif hexd not in shipped:
                needed.setdefault(f"sha256:{hexd}", []).append(img.service)
    return needed
