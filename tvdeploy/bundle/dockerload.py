"""A ``docker load`` archive assembled on the fly from a bundle's OCI layout.

``docker load`` wants the ``docker save`` layout: ``manifest.json`` (Config, RepoTags, Layers),
the image config as ``<hex>.json`` and each layer as ``<hex>/layer.tar``. A bundle's layers are
uncompressed tars whose sha256 is the diff id, so they go into the archive as they are: the
stream is tar headers plus slices of the bundle, read in 1 MiB pieces, never a whole layer in
memory. Each layer is sent once per archive even when several images share it.

The loaded image's id is the sha256 of its config blob; the caller checks it on every node (and
dockerd itself refuses a layer whose content does not match the config's diff ids).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BLOCK = 512
MTIME = 0  # fixed: the same images give the same archive bytes

BlobReader = Callable[[str, int], Iterator[bytes]]  # (hex digest, size) -> exactly size bytes


@dataclass(frozen=True)
class LoadImage:
    """One image to load: its tag, its config (hex digest and bytes) and its layers (hex, size)."""

    tag: str
    config_hex: str
    config: bytes
    layers: tuple[tuple[str, int], ...]

    @property
    def image_id(self) -> str:
        return f"sha256:{self.config_hex}"


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.mode = 0o644 if kind == tarfile.REGTYPE else 0o755
    info.mtime = MTIME
    return info.tobuf(format=tarfile.PAX_FORMAT)  # a pax header only when a size needs it


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def manifest_json(images: list[LoadImage]) -> bytes:
    return json.dumps([
        {"Config": f"{img.config_hex}.json", "RepoTags": [img.tag] if img.tag else [],
         "Layers": [f"{hexd}/layer.tar" for hexd, _size in img.layers]}
        for img in images
    ], separators=(",", ":")).encode()


def archive_size(images: list[LoadImage], absent: frozenset[str] = frozenset()) -> int:
    """The exact byte length ``stream`` yields (for progress), without reading any layer."""
    total = 0
    sent: set[str] = set(absent)
    for img in images:
        for hexd, size in img.layers:
            if hexd not in sent:
                sent.add(hexd)
                total += len(_header(f"{hexd}/", 0, tarfile.DIRTYPE)) + len(_header(f"{hexd}/layer.tar", size))
                total += size + len(_padding(size))
    for cfg in {img.config_hex: img.config for img in images}.items():
        total += len(_header(f"{cfg[0]}.json", len(cfg[1]))) + len(cfg[1]) + len(_padding(len(cfg[1])))
    manifest = manifest_json(images)
    return total + len(_header("manifest.json", len(manifest))) + len(manifest) + len(_padding(len(manifest))) \
        + 2 * BLOCK


def stream(images: list[LoadImage], read_blob: BlobReader, absent: frozenset[str] = frozenset()) -> Iterator[bytes]:
    """Yield the archive; *read_blob* supplies each layer's bytes (checked for length here).

    Layers in *absent* (a delta bundle does not ship them) are listed in manifest.json but not
    sent: dockerd looks a layer up by chain id before it opens the file, so a node that already
    has the layer loads the image without it (the caller checked that every node has it)."""
    sent: set[str] = set(absent)
    for img in images:
        for hexd, size in img.layers:
            if hexd in sent:
                continue
            sent.add(hexd)
            yield _header(f"{hexd}/", 0, tarfile.DIRTYPE)
            yield _header(f"{hexd}/layer.tar", size)
            got = 0
            for chunk in read_blob(hexd, size):
                got += len(chunk)
                yield chunk
            if got != size:
                raise ValueError(f"layer {hexd[:12]}: {got} of {size} bytes")
            yield _padding(size)
    configs: set[str] = set()
    for img in images:
        if img.config_hex in configs:
            continue
        configs.add(img.config_hex)
        yield _header(f"{img.config_hex}.json", len(img.config))
        yield img.config
        yield _padding(len(img.config))
    manifest = manifest_json(images)
    yield _header("manifest.json", len(manifest))
    yield manifest
    yield _padding(len(manifest))
    yield b"\0" * (2 * BLOCK)

