"""The bundle reader: the security boundary between removable media and the site.

It streams the tar once, front to back, and refuses anything a bundle written by tvdeploy would
not contain: paths with ``..`` or a leading ``/``, symlinks, hard links, devices, fifos, GNU or
global pax extensions, duplicate entries, unknown entries, JSON over a size bound or malformed,
a blob whose bytes do not hash to its name, a file that differs from ``manifest.json``, a file
missing, a truncated tar, bytes after the end of the archive. Headers are parsed here (one
512-byte block at a time, with tarfile's checksum-verifying header parser) rather than by
tarfile's archive reader, so nothing is ever extracted and every limit is checked before the
data it guards is read. Blob bytes reach a sink (import) only through a staging write that is
committed after the digest matched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tvdeploy.bundle import dsse, tarout
from tvdeploy.bundle.jsonsafe import JsonError, loads
from tvdeploy.bundle.layout import BLOB_PREFIX, FORMAT, OCI_LAYOUT, FileRecord
from tvdeploy.errors import VerificationError
from tvdeploy.reporting import NullReporter, Reporter

log = logging.getLogger(__name__)

BLOCK = 512
CHUNK = 1024 * 1024
ZERO_BLOCK = b"\0" * BLOCK
JSON_LIMITS = {
    "oci-layout": 4 * 1024,
    "index.json": 4 * 1024 * 1024,
    "release.json": 1024 * 1024,
    "inventory.json": 16 * 1024 * 1024,
    "manifest.json": 16 * 1024 * 1024,
}
# A statement lists every blob (~160 bytes each once base64'd): 16 MiB holds ~100k blobs.
MAX_SIGNATURE = 16 * 1024 * 1024
MAX_SIGNATURES = 64
MAX_SIGNATURE_TOTAL = 64 * 1024 * 1024
MAX_PAX = 64 * 1024
MAX_ENTRIES = 100_000
MAX_OCI_MANIFEST = 4 * 1024 * 1024
DIRS = {"blobs", "blobs/sha256", "signatures"}
BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
SIG_NAME = re.compile(r"signatures/([0-9a-f]{64})-([1-9][0-9]{0,3})\.json")
HEX64 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
REFUSED_TYPES = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a device file",
    tarfile.BLKTYPE: "a device file",
    tarfile.FIFOTYPE: "a fifo",
    tarfile.GNUTYPE_LONGNAME: "a GNU long-name entry",
    tarfile.GNUTYPE_LONGLINK: "a GNU long-link entry",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.XGLTYPE: "a global pax header",
}


class BundleError(VerificationError):
    """A bundle that is not exactly what tvdeploy writes; the message names file and entry."""


class BlobSink(Protocol):
    """Where an importer wants blobs: written to staging, kept only on commit. commit() means
    the blob's bytes match its digest; the bundle as a whole (manifest, signatures) is accepted
    only when read_bundle / verify_bundle return, so staged blobs stay staged until then."""

    def begin(self, hexdigest: str, size: int) -> None: ...
    def write(self, chunk: bytes | memoryview) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...


@dataclass(frozen=True)
class Patch:
    """A layer the bundle carries as a patch (manifest.json ``patches``): the blob ``patch``
    rebuilds the layer ``digest`` of ``size`` bytes from the layer ``base`` the site holds."""

    digest: str  # hex of the rebuilt layer
    size: int
    base: str  # hex
    patch: str  # hex of the patch blob, shipped


@dataclass
class Bundle:
    path: Path
    files: dict[str, FileRecord] = field(default_factory=dict)  # all but signatures
    data_offsets: dict[str, int] = field(default_factory=dict)
    docs: dict[str, Any] = field(default_factory=dict)
    signatures: dict[str, dsse.Envelope] = field(default_factory=dict)
    end_offset: int = 0  # where the end-of-archive blocks start: sign appends here
    size: int = 0
    # A delta: layers it does not carry, hex -> size (manifest.json ``expected_on_site``).
    expected: dict[str, int] = field(default_factory=dict)
    is_delta: bool = False
    # A delta's byte-level patches: result layer hex -> how to rebuild it from a base on site.
    patches: dict[str, Patch] = field(default_factory=dict)
    compressed: bool = False  # read through tvdeploy.bundle.compress (sizes/offsets: of the plain tar)
    engine_packages: Any = None  # tvdeploy.bundle.engine_packages.EnginePackages, when it carries them

    @property
    def release(self) -> dict[str, Any]:
        return dict(self.docs["release.json"])

    @property
    def inventory(self) -> dict[str, Any]:
        return dict(self.docs["inventory.json"])

    @property
    def manifest_sha256(self) -> str:
        return self.files["manifest.json"].sha256

    @property
    def blob_digests(self) -> list[str]:
        return sorted(p[len(BLOB_PREFIX):] for p in self.files if p.startswith(BLOB_PREFIX))

    @property
    def patch_bases(self) -> dict[str, int]:
        """Base layers the patches need on the site: hex -> how many patches use it."""
        out: dict[str, int] = {}
        for p in self.patches.values():
            out[p.base] = out.get(p.base, 0) + 1
        return out

    @property
    def since(self) -> dict[str, Any]:
        """A delta's base as recorded at build time (site, release): for people, not checks."""
        since = self.docs["manifest.json"].get("since")
        return dict(since) if isinstance(since, dict) else {}


class _Reader:
    def __init__(self, fh: BinaryIO, bundle: Bundle, reporter: Reporter, sink: BlobSink | None) -> None:
        self.fh = fh
        self.bundle = bundle
        self.reporter = reporter
        self.sink = sink
        self.offset = 0
        self.signature_bytes = 0
        self.buf = bytearray(CHUNK)

    def fail(self, message: str) -> BundleError:
        return BundleError(f"{self.bundle.path}: {message}")

    def read_exact(self, n: int, what: str) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise self.fail(f"truncated tar: {what} ends at byte {self.offset + len(data)}")
        self.offset += n
        return data

    def skip_padding(self, size: int, name: str) -> None:
        pad = -size % BLOCK
        if pad and self.read_exact(pad, name).count(0) != pad:
            raise self.fail(f"{name}: non-zero tar padding (bytes hidden after the entry)")

    def run(self) -> None:
        seen: set[str] = set()
        pax: dict[str, str] | None = None
        while True:
            start = self.offset
            block = self.fh.read(BLOCK)
            if len(block) < BLOCK:
                raise self.fail(f"truncated tar: archive ends at byte {start + len(block)} "
                                "without an end-of-archive marker")
            self.offset += BLOCK
            if block == ZERO_BLOCK:
                if pax is not None:
                    raise self.fail("pax header without an entry")
                self.finish(start)
                return
            info = self.header(block, start)
            if pax is not None:
                info = self.apply_pax(info, pax)
                pax = None
            if info.type == tarfile.XHDTYPE:
                pax = self.read_pax(info)
                continue
            if len(seen) >= MAX_ENTRIES:
                raise self.fail(f"more than {MAX_ENTRIES} entries")
            name = self.check_name(info)
            if name in seen:
                raise self.fail(f"{name}: duplicate entry")
            seen.add(name)
            self.entry(name, info)

    def header(self, block: bytes, start: int) -> tarfile.TarInfo:
        try:
            return tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError, ValueError):
            raise self.fail(f"malformed tar header at byte {start}") from None

    def read_pax(self, info: tarfile.TarInfo) -> dict[str, str]:
        if info.size > MAX_PAX:
            raise self.fail(f"pax header at byte {self.offset} larger than {MAX_PAX} bytes")
        data = self.read_exact(info.size, "pax header")
        self.skip_padding(info.size, "pax header")
        try:
            return tarout.parse_pax(data)
        except ValueError:
            raise self.fail(f"malformed pax header before byte {self.offset}") from None

    def apply_pax(self, info: tarfile.TarInfo, pax: dict[str, str]) -> tarfile.TarInfo:
        if "linkpath" in pax:
            raise self.fail(f"{info.name}: pax linkpath: links are not allowed in a bundle")
        if "path" in pax:
            info.name = pax["path"]
        if "size" in pax:
            if not re.fullmatch(r"\d{1,20}", pax["size"]):
                raise self.fail(f"{info.name}: malformed pax size")
            info.size = int(pax["size"])
        return info

    def check_name(self, info: tarfile.TarInfo) -> str:
        raw = info.name
        if info.type in REFUSED_TYPES:
            raise self.fail(f"{raw}: is {REFUSED_TYPES[info.type]}; bundles hold only files and folders")
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            raise self.fail(f"{raw}: unsupported tar entry type {info.type!r}")
        if not raw:
            raise self.fail(f"entry with an empty name at byte {self.offset - BLOCK}")
        if raw.startswith("/"):
            raise self.fail(f"{raw}: absolute path in bundle")
        parts = raw.rstrip("/").split("/") if info.type == tarfile.DIRTYPE else raw.split("/")
        if ".." in parts:
            raise self.fail(f"{raw}: path with '..' in bundle")
        if any(p in ("", ".") for p in parts) or "\\" in raw or any(ord(c) < 32 for c in raw):
            raise self.fail(f"{raw}: unclean path in bundle")
        name = "/".join(parts)
        if info.type == tarfile.DIRTYPE:
            if name not in DIRS or info.size != 0:
                raise self.fail(f"{raw}: unknown entry in bundle")
        elif not (name in JSON_LIMITS or BLOB_NAME.fullmatch(name) or SIG_NAME.fullmatch(name)):
            raise self.fail(f"{raw}: unknown entry in bundle")
        if info.size < 0:
            raise self.fail(f"{raw}: negative size")
        return name

    def entry(self, name: str, info: tarfile.TarInfo) -> None:
        if info.type == tarfile.DIRTYPE:
            return
        blob = BLOB_NAME.fullmatch(name)
        if blob:
            self.blob(name, blob.group(1), info.size)
        elif name in JSON_LIMITS:
            self.json_file(name, info.size)
        else:
            self.signature(name, info.size)

    def blob(self, name: str, hexdigest: str, size: int) -> None:
        self.bundle.data_offsets[name] = self.offset
        digest = hashlib.sha256()
        view = memoryview(self.buf)
        remaining = size
        if self.sink is not None:
            self.sink.begin(hexdigest, size)
        try:
            while remaining:
                n = self.fh.readinto(view[:min(CHUNK, remaining)])  # type: ignore[attr-defined]
                if not n:
                    raise self.fail(f"truncated tar: {name} ends after {size - remaining} of {size} bytes")
                digest.update(view[:n])
                if self.sink is not None:
                    self.sink.write(view[:n])
                remaining -= n
                self.offset += n
                self.reporter.advance("read", n)
            self.skip_padding(size, name)
            actual = digest.hexdigest()
            if actual != hexdigest:
                raise self.fail(f"{name}: content does not match its digest (it hashes to sha256:{actual})")
        except BaseException:
            if self.sink is not None:
                self.sink.discard()
            raise
        if self.sink is not None:
            self.sink.commit()
        self.bundle.files[name] = FileRecord(name, size, hexdigest)

    def json_file(self, name: str, size: int) -> None:
        limit = JSON_LIMITS[name]
        if size > limit:
            raise self.fail(f"{name}: oversized ({size} bytes; at most {limit})")
        self.bundle.data_offsets[name] = self.offset
        data = self.read_exact(size, name)
        self.skip_padding(size, name)
        try:
            self.bundle.docs[name] = loads(data, limit=limit)
        except JsonError as exc:
            raise self.fail(f"{name}: {exc}") from None
        self.bundle.files[name] = FileRecord(name, size, hashlib.sha256(data).hexdigest())

    def signature(self, name: str, size: int) -> None:
        if size > MAX_SIGNATURE:
            raise self.fail(f"{name}: oversized ({size} bytes; at most {MAX_SIGNATURE})")
        if len(self.bundle.signatures) >= MAX_SIGNATURES:
            raise self.fail(f"more than {MAX_SIGNATURES} signatures")
        self.signature_bytes += size
        if self.signature_bytes > MAX_SIGNATURE_TOTAL:
            raise self.fail(f"signatures larger than {MAX_SIGNATURE_TOTAL} bytes in all")
        data = self.read_exact(size, name)
        self.skip_padding(size, name)
        try:
            self.bundle.signatures[name] = dsse.parse(data)
        except dsse.EnvelopeError as exc:
            raise self.fail(f"{name}: {exc}") from None

    def finish(self, start: int) -> None:
        second = self.fh.read(BLOCK)
        if second != ZERO_BLOCK:
            if len(second) < BLOCK:
                raise self.fail(f"truncated tar: end-of-archive marker cut at byte {self.offset + len(second)}")
            raise self.fail(f"malformed end-of-archive marker at byte {start}")
        self.offset += BLOCK
        self.bundle.end_offset = start
        # Only zero padding may follow (tar pads to a record size); anything else was smuggled.
        while True:
            rest = self.fh.read(CHUNK)
            if not rest:
                break
            if rest.count(0) != len(rest):
                raise self.fail(f"data after the end of the archive (byte {self.offset})")
            self.offset += len(rest)
        self.bundle.size = self.offset


def read_bundle(path: Path, *, reporter: Reporter | None = None, sink: BlobSink | None = None,
                fileobj: BinaryIO | None = None, total: int | None = None,
                description: str | None = None) -> Bundle:
    """Read and check all of *path*; returns what it holds, or raises BundleError/InputFileError.

    With *fileobj* (read, readinto, seek, tell; e.g. the chunks of a chunk folder in order) the
    bytes come from there and *path* only names the bundle in messages; *total* and
    *description* are for the progress bar."""
    reporter = reporter or NullReporter()
    bundle = Bundle(Path(path))
    if fileobj is not None:
        _read_plain(fileobj, bundle, reporter, sink, total, description or f"reading {Path(path).name}")
        return bundle
    from tvdeploy.inputs import open_input

    with open_input(path, "bundle file", missing="bundle") as fh:
        total = os.fstat(fh.fileno()).st_size
        _read_plain(fh, bundle, reporter, sink, total, description or f"reading {Path(path).name}")
    return bundle


def _read_plain(fh: BinaryIO, bundle: Bundle, reporter: Reporter, sink: BlobSink | None, total: int | None,
                description: str) -> None:
    """A compressed bundle (tvdeploy.bundle.compress) is read as the plain tar it holds."""
    from tvdeploy.bundle.compress import PlainReader, open_plain

    plain = open_plain(fh, str(bundle.path))
    if isinstance(plain, PlainReader):
        bundle.compressed = True
        with plain:
            _read_from(plain, bundle, reporter, sink, plain.plain_size, description)
        return
    _read_from(fh, bundle, reporter, sink, total, description)


def _read_from(fh: BinaryIO, bundle: Bundle, reporter: Reporter, sink: BlobSink | None, total: int | None,
               description: str) -> None:
    reporter.task("read", description, total=total, unit="bytes")
    _Reader(fh, bundle, reporter, sink).run()
    reporter.done("read")
    check_structure(bundle, fh)


def _fail(bundle: Bundle, message: str) -> BundleError:
    return BundleError(f"{bundle.path}: {message}")


def _digest_hex(value: Any, where: str, bundle: Bundle) -> str:
    m = DIGEST.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise _fail(bundle, f"{where}: not a sha256 digest")
    return m.group(1)


def _need_blob(bundle: Bundle, hexdigest: str, size: Any, where: str, *, layer: bool = False) -> FileRecord:
    """The blob *hexdigest* as shipped; for a *layer* of a delta it may instead be expected on
    the site (then its size is the one the signed manifest.json lists)."""
    record = bundle.files.get(BLOB_PREFIX + hexdigest)
    if record is None and layer and hexdigest in bundle.expected:
        record = FileRecord(BLOB_PREFIX + hexdigest, bundle.expected[hexdigest], hexdigest)
    if record is None and layer and hexdigest in bundle.patches:
        record = FileRecord(BLOB_PREFIX + hexdigest, bundle.patches[hexdigest].size, hexdigest)
    if record is None:
        also = "; not listed as expected on site either" if bundle.is_delta else ""
        raise _fail(bundle, f"{BLOB_PREFIX}{hexdigest}: missing blob (referenced by {where}){also}")
    if size is not None and size != record.size:
        raise _fail(bundle, f"{where}: size {size} differs from blob {hexdigest[:12]} ({record.size} bytes)")
    return record


def check_structure(bundle: Bundle, fh: BinaryIO) -> None:
    """After the stream: every file listed and matching, every reference present."""
    for name in JSON_LIMITS:
        if name not in bundle.docs:
            raise _fail(bundle, f"{name}: missing")
    _check_manifest(bundle)
    if bundle.docs["oci-layout"] != OCI_LAYOUT:
        raise _fail(bundle, "oci-layout: not an OCI image layout 1.0.0")
    index_digests, layers = _check_index(bundle, fh)
    unused = sorted(set(bundle.expected) - layers)
    if unused:
        raise _fail(bundle, f"manifest.json: expected_on_site: sha256:{unused[0]} is not a layer of any image")
    unused = sorted(set(bundle.patches) - layers)
    if unused:
        raise _fail(bundle, f"manifest.json: patches: sha256:{unused[0]} is not a layer of any image")
    _check_release(bundle, index_digests)
    if not isinstance(bundle.docs["inventory.json"], dict) or not isinstance(
        bundle.docs["inventory.json"].get("images"), dict
    ):
        raise _fail(bundle, "inventory.json: expected {images: {...}}")


def _check_manifest(bundle: Bundle) -> None:
    doc = bundle.docs["manifest.json"]
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), dict):
        raise _fail(bundle, f"manifest.json: not a {FORMAT} manifest")
    listed: dict[str, Any] = doc["files"]
    for path, entry in listed.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("size"), int) or not (
            isinstance(entry.get("sha256"), str) and HEX64.fullmatch(entry["sha256"])
        ):
            raise _fail(bundle, f"manifest.json: files.{path}: expected {{size, sha256}}")
        record = bundle.files.get(path)
        if record is None or path == "manifest.json":
            what = "missing blob" if path.startswith(BLOB_PREFIX) else "missing"
            raise _fail(bundle, f"{path}: {what} (listed in manifest.json)")
        if record.size != entry["size"] or record.sha256 != entry["sha256"]:
            raise _fail(bundle, f"{path}: differs from manifest.json (size or sha256)")
    for path in bundle.files:
        if path != "manifest.json" and path not in listed:
            raise _fail(bundle, f"{path}: not listed in manifest.json")
    if "expected_on_site" in doc:
        _check_expected(bundle, doc)
    if "patches" in doc:
        _check_patches(bundle, doc["patches"])
    if "engine_packages" in doc:
        from tvdeploy.bundle.engine_packages import check_section

        bundle.engine_packages = check_section(bundle, doc["engine_packages"], _fail)


def _check_expected(bundle: Bundle, doc: dict[str, Any]) -> None:
    """A delta's ``expected_on_site``: [{digest, size}], each once, none of them shipped too."""
    items = doc["expected_on_site"]
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        raise _fail(bundle, "manifest.json: expected_on_site: expected a list of {digest, size}")
    if "since" in doc and not isinstance(doc["since"], dict):
        raise _fail(bundle, "manifest.json: since: expected a mapping")
    bundle.is_delta = True
    for i, item in enumerate(items):
        where = f"manifest.json: expected_on_site[{i}]"
        if not isinstance(item, dict) or set(item) != {"digest", "size"}:
            raise _fail(bundle, f"{where}: expected {{digest, size}}")
        hexdigest = _digest_hex(item["digest"], where, bundle)
        size = item["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _fail(bundle, f"{where}: size: expected an integer >= 0")
        if hexdigest in bundle.expected:
            raise _fail(bundle, f"{where}: sha256:{hexdigest} listed twice")
        if BLOB_PREFIX + hexdigest in bundle.files:
            raise _fail(bundle, f"{where}: sha256:{hexdigest} is shipped in the bundle too")
        bundle.expected[hexdigest] = size


def _check_patches(bundle: Bundle, items: Any) -> None:
    """A delta's ``patches``: [{digest, size, base, patch}]: each result layer once, neither
    shipped nor expected; its patch blob shipped; its base not shipped (the site holds it) and
    not itself rebuilt from a patch; sizes within what import can rebuild."""
    from tvdeploy.bundle.patch import MAX_LAYER

    if not bundle.is_delta:
        raise _fail(bundle, "manifest.json: patches in a bundle that is not a delta (no expected_on_site)")
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        raise _fail(bundle, "manifest.json: patches: expected a list of {digest, size, base, patch}")
    for i, item in enumerate(items):
        where = f"manifest.json: patches[{i}]"
        if not isinstance(item, dict) or set(item) != {"digest", "size", "base", "patch"}:
            raise _fail(bundle, f"{where}: expected {{digest, size, base, patch}}")
        result = _digest_hex(item["digest"], f"{where}.digest", bundle)
        base = _digest_hex(item["base"], f"{where}.base", bundle)
        patch = _digest_hex(item["patch"], f"{where}.patch", bundle)
        size = item["size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_LAYER:
            raise _fail(bundle, f"{where}: size: expected an integer from 0 to {MAX_LAYER}")
        if result in bundle.patches:
            raise _fail(bundle, f"{where}: sha256:{result} listed twice")
        if BLOB_PREFIX + result in bundle.files or result in bundle.expected:
            raise _fail(bundle, f"{where}: sha256:{result} is also shipped or expected on site")
        if BLOB_PREFIX + patch not in bundle.files:
            raise _fail(bundle, f"{where}: patch blob sha256:{patch} is not in the bundle")
        if BLOB_PREFIX + base in bundle.files or base == result:
            raise _fail(bundle, f"{where}: base sha256:{base} must be a layer the site holds, not one shipped")
        bundle.patches[result] = Patch(result, size, base, patch)
    rebuilt_bases = sorted(p.base for p in bundle.patches.values() if p.base in bundle.patches)
    if rebuilt_bases:
        raise _fail(bundle, f"manifest.json: patches: base sha256:{rebuilt_bases[0]} is itself rebuilt from a patch")


def _read_back(bundle: Bundle, fh: BinaryIO, record: FileRecord) -> bytes:
    if record.size > MAX_OCI_MANIFEST:
        raise _fail(bundle, f"{record.path}: oversized image manifest ({record.size} bytes)")
    fh.seek(bundle.data_offsets[record.path])
    data = fh.read(record.size)
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise _fail(bundle, f"{record.path}: changed while being read")
    return data


def _check_index(bundle: Bundle, fh: BinaryIO) -> tuple[set[str], set[str]]:
    """Every image manifest of index.json present and its config and layers present (a delta's
    layers: or expected on site). Returns the manifest digests and the layer digests."""
    index = bundle.docs["index.json"]
    if not isinstance(index, dict) or index.get("schemaVersion") != 2 or not isinstance(
        index.get("manifests"), list
    ):
        raise _fail(bundle, "index.json: not an OCI image index")
    out: set[str] = set()
    layers: set[str] = set()
    for i, desc in enumerate(index["manifests"]):
        where = f"index.json manifests[{i}]"
        if not isinstance(desc, dict):
            raise _fail(bundle, f"{where}: not a descriptor")
        hexdigest = _digest_hex(desc.get("digest"), where, bundle)
        record = _need_blob(bundle, hexdigest, desc.get("size"), where)
        try:
            manifest = loads(_read_back(bundle, fh, record), limit=MAX_OCI_MANIFEST)
        except JsonError as exc:
            raise _fail(bundle, f"{record.path}: image manifest: {exc}") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) or not isinstance(
            manifest.get("layers"), list
        ):
            raise _fail(bundle, f"{record.path}: not an OCI image manifest")
        mwhere = f"image manifest {hexdigest[:12]}"
        for n, desc2 in enumerate([manifest["config"], *manifest["layers"]]):
            if not isinstance(desc2, dict):
                raise _fail(bundle, f"{mwhere}: not a descriptor")
            blob = _digest_hex(desc2.get("digest"), mwhere, bundle)
            _need_blob(bundle, blob, desc2.get("size"), mwhere, layer=n > 0)
            if n > 0:
                layers.add(blob)
        out.add(hexdigest)
    return out, layers


def _check_release(bundle: Bundle, index_digests: set[str]) -> None:
    rel = bundle.docs["release.json"]
    if not isinstance(rel, dict) or not isinstance(rel.get("release"), str) or not isinstance(
        rel.get("images"), dict
    ):
        raise _fail(bundle, "release.json: expected {release, sequence, images}")
    seq = rel.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise _fail(bundle, "release.json: sequence: expected an integer >= 1")
    for svc, img in rel["images"].items():
        if not isinstance(img, dict) or not isinstance(img.get("reference"), str):
            raise _fail(bundle, f"release.json: images.{svc}: expected {{reference, digest}}")
        hexdigest = _digest_hex(img.get("digest"), f"release.json: images.{svc}.digest", bundle)
        if hexdigest not in index_digests:
            raise _fail(bundle, f"release.json: images.{svc}: manifest {hexdigest[:12]} not in index.json")
