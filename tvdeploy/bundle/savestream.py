"""Convert a ``docker save`` tar stream into OCI layout blobs, in one pass, memory flat.

The stream (``docker save`` of one or more images) is read member by member (tarin):
layers (``<id>/layer.tar``, or ``blobs/sha256/<hex>`` from newer engines) are copied into the
bundle as they arrive, hashed while written; a layer's sha256 is its diff_id, and since layers
are stored uncompressed it is also its OCI digest. Small files (configs, ``manifest.json``) are
kept in memory. ``manifest.json`` comes last in the stream; only then is it known which layer
belongs to which image, so configs and OCI manifests are written at the end.

Synthetic streams in the unit tests use the same tar format as ``docker save``.
"""

from __future__ import annotations

import logging
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

from tvdeploy.bundle import tarin, tarout
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.bundle.layout import FileRecord, LayoutWriter, oci_manifest
from tvdeploy.connectors.build_engine import ImageHint
from tvdeploy.reporting import NullReporter, Reporter

log = logging.getLogger(__name__)

SMALL = 1024 * 1024  # kept in memory: configs, manifest.json, tiny layers
MAX_JSON = 16 * 1024 * 1024
MAX_SMALL_TOTAL = 32 * 1024 * 1024  # past this, small files are streamed into the bundle too
MAX_LINK_HOPS = 8


class SaveStreamError(ValueError):
    """The engine's stream is not a well-formed ``docker save`` archive."""


@dataclass(frozen=True)
class SavedImage:
    repo_tags: tuple[str, ...]
    config: FileRecord
    layers: tuple[FileRecord, ...]
    manifest: FileRecord
    created: str | None
    labels: dict[str, str]


@dataclass
class _State:
    layout: LayoutWriter
    reporter: Reporter
    hints: list[ImageHint]
    small: dict[str, bytes] = field(default_factory=dict)
    small_total: int = 0
    streamed: dict[str, FileRecord] = field(default_factory=dict)  # member path -> blob
    links: dict[str, str] = field(default_factory=dict)  # member path -> target path
    save_manifest: Any = None


class _Guarded:
    """The source with its I/O errors (a reset connection, a timeout) told apart from errors
    writing the bundle."""

    def __init__(self, src: tarout.Source) -> None:
        self.src = src

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self.src.read(n)
        except OSError as exc:
            raise SaveStreamError(f"stream broke: {exc.strerror or exc}") from None

    def readinto(self, view: memoryview, /) -> int:
        try:
            readinto = getattr(self.src, "readinto", None)
            if readinto is not None:
                return int(readinto(view))
            data = self.src.read(len(view))
        except OSError as exc:
            raise SaveStreamError(f"stream broke: {exc.strerror or exc}") from None
        view[: len(data)] = data
        return len(data)


def convert(stream: tarout.Source, layout: LayoutWriter, *, hints: list[ImageHint] | None = None,
            reporter: Reporter | None = None) -> list[SavedImage]:
    """Read the whole ``docker save`` *stream*, write blobs into *layout*, return its images."""
    st = _State(layout, reporter or NullReporter(), list(hints or []))
    for hint in st.hints:
        st.reporter.task(hint.ref, hint.ref, total=hint.size or None, unit="bytes")
    try:
        for member, data in tarin.members(_Guarded(stream)):
            _member(st, member, data)
    except tarin.TarStreamError as exc:
        raise SaveStreamError(f"not a docker save archive: {exc}") from None
    except tarout.TruncatedSource as exc:
        raise SaveStreamError(f"stream ended early: {exc}") from None
    if st.save_manifest is None:
        raise SaveStreamError("no manifest.json in the docker save archive")
    images = [_image(st, i, entry) for i, entry in enumerate(st.save_manifest)]
    for hint in st.hints:
        st.reporter.done(hint.ref)
    return images


def _member(st: _State, member: tarin.Member, fh: tarin.MemberData) -> None:
    name = posixpath.normpath(member.name.removeprefix("./"))
    if member.type == tarfile.DIRTYPE:
        return
    if member.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        # docker save links a layer it already wrote for another image (same diff_id).
        base = posixpath.dirname(name) if member.type == tarfile.SYMTYPE else ""
        st.links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
        return
    if not member.isfile():
        raise SaveStreamError(f"{name}: unexpected entry type in docker save archive")
    if name == "manifest.json":
        if member.size > MAX_JSON:
            raise SaveStreamError(f"manifest.json is larger than {MAX_JSON} bytes")
        st.save_manifest = _json(fh.read(MAX_JSON + 1), name)
    elif name in ("repositories", "index.json", "oci-layout") or name.endswith(("/VERSION", "/json")):
        return  # legacy metadata we do not need; tarfile skips the data
    elif member.size <= SMALL and st.small_total + member.size <= MAX_SMALL_TOTAL:
        # Kept until manifest.json says what it is (config, tiny layer, or nothing we need).
        st.small_total += member.size
        st.small[name] = fh.read(member.size)
    else:
        record = st.layout.stream_blob(fh, member.size, layer=_is_layer(st, name))
        st.streamed[name] = record
        _advance(st, record)


def _is_layer(st: _State, name: str) -> bool:
    """Whether a member may be left out of a delta: only layers may (configs and manifests are
    always shipped). Engine 20.10 names layers ``<id>/layer.tar``; newer engines name every blob
    ``blobs/sha256/<hex>``, and there only a digest the engine listed as a diff_id counts."""
    if name.endswith("/layer.tar"):
        return True
    if name.startswith("blobs/sha256/"):
        claimed = f"sha256:{name.rsplit('/', 1)[-1]}"
        return any(claimed in hint.diff_ids for hint in st.hints)
    return False


def _advance(st: _State, record: FileRecord) -> None:
    for hint in st.hints:
        if f"sha256:{record.sha256}" in hint.diff_ids or record.sha256 == hint.config_hex:
            st.reporter.advance(hint.ref, record.size)


def _json(data: bytes, what: str) -> Any:
    try:
        return loads(data, limit=MAX_JSON)
    except JsonError as exc:
        raise SaveStreamError(f"{what}: {exc}") from None


def _resolve(st: _State, path: str) -> str:
    for _ in range(MAX_LINK_HOPS):
        if path not in st.links:
            return path
        path = st.links[path]
    raise SaveStreamError(f"{path}: link loop in docker save archive")


def _blob(st: _State, path: str) -> FileRecord:
    path = _resolve(st, posixpath.normpath(path))
    if path in st.streamed:
        return st.streamed[path]
    if path in st.small:
        record = st.layout.add_blob(st.small[path], layer=True)
        _advance(st, record)
        return record
    raise SaveStreamError(f"{path}: referenced by manifest.json but not in the archive")


def _config_bytes(st: _State, path: str) -> bytes:
    path = _resolve(st, posixpath.normpath(path))
    if path in st.small:
        return st.small[path]
    if path in st.streamed:
        if st.streamed[path].sha256 in st.layout.skipped:
            raise SaveStreamError(f"{path}: config named like a layer in the docker save archive")
        return st.layout.read_blob(st.streamed[path].sha256)
    raise SaveStreamError(f"{path}: config referenced by manifest.json but not in the archive")


def _image(st: _State, index: int, entry: Any) -> SavedImage:
    where = f"manifest.json[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(
        entry.get("Layers"), list
    ):
        raise SaveStreamError(f"{where}: expected Config and Layers")
    config_data = _config_bytes(st, entry["Config"])
    config_doc = _json(config_data, entry["Config"])
    if not isinstance(config_doc, dict):
        raise SaveStreamError(f"{entry['Config']}: image config is not an object")
    layers = tuple(_blob(st, str(p)) for p in entry["Layers"])
    diff_ids = (config_doc.get("rootfs") or {}).get("diff_ids") or []
    actual = [f"sha256:{layer.sha256}" for layer in layers]
    if diff_ids != actual:
        raise SaveStreamError(f"{where}: layer digests do not match the image config's diff_ids")
    config = st.layout.add_blob(config_data)
    manifest = st.layout.add_blob(oci_manifest(config, list(layers)))
    labels = (config_doc.get("config") or {}).get("Labels") or {}
    tags = entry.get("RepoTags") or []
    return SavedImage(
        repo_tags=tuple(str(t) for t in tags),
        config=config,
        layers=layers,
        manifest=manifest,
        created=config_doc.get("created") if isinstance(config_doc.get("created"), str) else None,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )
