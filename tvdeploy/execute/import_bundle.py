"""``bundle import``: a verified bundle's images onto the site, resumably, every step audited.

Order, and why:
1. Verify strictly (integrity of every byte, signature threshold, trust root): before anything
   is written anywhere, including the local journal.
2. Replay protection against the last COMPLETED import, read from the operator state and from
   the managers (so another operator machine cannot roll the site back either).
3. Confirm, then work: ``site-registry`` pushes blobs (skipping those present: that is the
   resume) and manifests, then reads every manifest back by digest; ``node-load`` streams a
   ``docker load`` archive to each node and checks each image id.
4. Record the release as the last completed import (operator state + managers), drop the journal.

The bundle is read twice: once to verify, once to send. The second read goes by the offsets the
first one found, and every blob is re-hashed while sent (and the registry / dockerd check digests
again), so a bundle swapped between the two reads is caught.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tvdeploy import state
from tvdeploy.bundle.dockerload import LoadImage
from tvdeploy.bundle.layout import BLOB_PREFIX
from tvdeploy.bundle.sizes import format_size
from tvdeploy.errors import ConnectionFailed, RefusedError, TvdeployError, VerificationError
from tvdeploy.release import import_state as S
from tvdeploy.release.registry_address import IMAGE_KEY, SERVICE, endpoint

if TYPE_CHECKING:
    from tvdeploy.bundle.chunkbundle import PathVerified
    from tvdeploy.bundle.reader import Bundle
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.registry import Registry
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

SITE_RECORD = "/etc/docker/tvdeploy/last-import.json"
READ = 1024 * 1024


# -- the bundle's images ------------------------------------------------------------------------

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

    def open(self) -> BinaryIO:
        from typing import cast

        from tvdeploy.bundle.chunkio import ChunkedReader

        if self.verified.chunks is not None:
            return cast(BinaryIO, ChunkedReader(Path(self.bundle.path), self.verified.chunks.index))
        return open(self.bundle.path, "rb")  # noqa: SIM115 - the caller closes it

    @property
    def shipped(self) -> frozenset[str]:
        """Hex digests of the blobs this bundle carries (a delta carries only some)."""
        return frozenset(self.bundle.blob_digests)

    def where(self, hexd: str) -> tuple[int, int]:
        name = BLOB_PREFIX + hexd
        return self.bundle.data_offsets[name], self.bundle.files[name].size

    def read_small(self, fh: BinaryIO, hexd: str) -> bytes:
        import hashlib

        offset, size = self.where(hexd)
        fh.seek(offset)
        data = fh.read(size)
        if hashlib.sha256(data).hexdigest() != hexd:
            raise VerificationError(f"{self.bundle.path}: blobs/sha256/{hexd}: changed after verification")
        return data

    def chunks(self, fh: BinaryIO, hexd: str) -> Iterator[bytes]:
        """The bytes of blob *hexd*, re-hashed; a mismatch at the end raises."""
        import hashlib

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


# -- where completed imports and the journal live ------------------------------------------------

def imports_dir(site: Site) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / "imports"


def read_local_last(site: Site) -> S.Completed | None:
    path = imports_dir(site) / "last.json"
    try:
        return S.Completed.from_json(json.loads(path.read_bytes()), str(path))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise TvdeployError(f"{path}: damaged record of the last import ({exc}); restore it or remove it "
                            "(the copy on the managers still counts)") from None


def read_site_last(site: Site, pool: SSHPool) -> S.Completed | None:
    """The highest record on the managers (any manager may have been replaced); read in parallel."""
    from tvdeploy.execute.parallel import for_each

    def one(node: Any) -> S.Completed | None:
        text = pool.get(node.name).run(f"cat {SITE_RECORD} 2>/dev/null || true", check=False).stdout
        if not text.strip():
            return None
        try:
            return S.Completed.from_json(json.loads(text), f"node {node.name}: {SITE_RECORD}")
        except ValueError as exc:
            raise TvdeployError(f"node {node.name}: {SITE_RECORD}: damaged record of the last import ({exc})") \
                from None

    return S.latest(for_each(site.managers, one, label=lambda n: f"node {n.name}"))


def write_completed(site: Site, pool: SSHPool, done: S.Completed) -> None:
    from tvdeploy.connectors.ssh import FileSpec
    from tvdeploy.execute.parallel import for_each

    data = json.dumps(done.to_json(), sort_keys=True).encode() + b"\n"
    for_each(site.managers, lambda n: pool.get(n.name).put_files([FileSpec(SITE_RECORD, data, 0o644)]),
             label=lambda n: f"node {n.name}")
    state.write_atomic(imports_dir(site) / "last.json", data, mode=0o644)


@contextmanager
def import_lock(site: Site) -> Iterator[None]:
    """One import per site at a time on this machine (two would interleave one journal)."""
    import fcntl

    path = imports_dir(site) / "lock"
    state.ensure_dir(path.parent)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefusedError(f"{path}: another bundle import of site {site.site.name} is running") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class JournalFile:
    """The append-only journal of the import in progress (fsync per line: it is small)."""

    def __init__(self, site: Site) -> None:
        self.path = imports_dir(site) / "journal.jsonl"

    def load(self) -> S.Journal | None:
        try:
            return S.parse_journal(self.path.read_bytes())
        except FileNotFoundError:
            return None

    def start(self, journal: S.Journal) -> None:
        state.write_atomic(self.path, S.encode(journal.header()))

    def add(self, journal: S.Journal, rec: dict[str, Any]) -> None:
        S.apply_record(journal, rec)
        with open(self.path, "ab") as fh:
            fh.write(S.encode(rec))
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# -- the import -----------------------------------------------------------------------------------

@dataclass
class Moved:
    moved: int = 0
    skipped: int = 0
    uploaded: int = 0  # blobs sent
    present: int = 0  # blobs already there (or mounted)


@dataclass
class ImportResult:
    release: str
    sequence: int
    mode: str
    manifest_sha256: str
    resumed: bool
    images: dict[str, str] = field(default_factory=dict)  # service -> digest / image id
    bytes_moved: int = 0
    bytes_skipped: int = 0
    registry: str | None = None
    nodes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall time

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "mode": self.mode,
                "manifest_sha256": self.manifest_sha256, "resumed": self.resumed, "registry": self.registry,
                "nodes": self.nodes, "bytes_moved": self.bytes_moved, "bytes_skipped": self.bytes_skipped,
                "images": self.images, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def _audit(site: Site, event: str, objects: list[dict[str, str]], outcome: str = "success",
           error: str | None = None) -> None:
    from tvdeploy.audit.recorder import record

    record(site, event, objects=objects, outcome=outcome, error=error)


def byte_task(reporter: Reporter, key: str, description: str, total: int) -> None:
    """A progress task counted in bytes (the terminal reporter shows sizes and rates)."""
    reporter.task(key, description, total=total, unit="bytes")


def verify_and_check(site: Site, path: Path, trust_path: Path, pool: SSHPool,
                     reporter: Reporter) -> tuple[PathVerified, S.Completed | None]:
    from tvdeploy.bundle.chunkbundle import verify_bundle_path

    verified = verify_bundle_path(path, trust_path, reporter=reporter)
    bundle = verified.verified.bundle
    rel = bundle.release
    last = S.latest([read_local_last(site), read_site_last(site, pool)])
    try:
        S.check_replay(rel["release"], rel["sequence"], bundle.manifest_sha256, last)
    except TvdeployError as exc:
        _audit(site, "bundle.import", [_bundle_object(bundle)], outcome="refused", error=exc.message)
        raise
    return verified, last


def _bundle_object(bundle: Bundle) -> dict[str, str]:
    rel = bundle.release
    return {"type": "bundle", "name": str(bundle.path), "digest": f"sha256:{bundle.manifest_sha256}",
            "release": str(rel["release"]), "sequence": str(rel["sequence"])}


def import_verified(site: Site, verified: PathVerified, pool: SSHPool, reporter: Reporter,
                    now: datetime | None = None) -> ImportResult:
    """Steps 3-4 for a bundle that passed ``verify_and_check``."""
    bf = BundleFile(verified)
    with import_lock(site):
        return _import_locked(site, verified, bf, pool, reporter, now)


def _import_locked(site: Site, verified: PathVerified, bf: BundleFile, pool: SSHPool, reporter: Reporter,
                   now: datetime | None) -> ImportResult:
    bundle = bf.bundle
    rel = bundle.release
    mode = site.registry.mode
    bundle_obj = _bundle_object(bundle)
    images = bf.images()
    try:
        check_delta(site, bf, images)  # before anything is written, even the journal
    except RefusedError as exc:
        _audit(site, "bundle.import", [bundle_obj], outcome="refused", error=exc.message)
        raise
    jfile = JournalFile(site)
    journal = jfile.load()
    resumed = journal is not None and journal.same_bundle(bundle.manifest_sha256, mode)
    if journal is not None and not resumed:
        reporter.warn(f"an interrupted import of release {journal.release} (sequence {journal.sequence}) is "
                      "abandoned; its blobs already on the site are reused")
    if journal is None or not resumed:
        journal = S.Journal(bundle.manifest_sha256, rel["release"], rel["sequence"], mode)
        jfile.start(journal)
    signers = [{"type": "key", "name": "signer", "key_id": kid} for kid in verified.verified.signers]
    _audit(site, "bundle.import.start", [bundle_obj, {"type": "import", "name": mode,
                                                      "resumed": "yes" if resumed else "no"}, *signers])
    result = ImportResult(rel["release"], rel["sequence"], mode, bundle.manifest_sha256, resumed)
    try:
        if mode == "site-registry":
            _to_registry(site, bf, images, pool, journal, jfile, reporter, result, now or datetime.now(UTC))
        else:
            _to_nodes(site, bf, images, journal, jfile, reporter, result)
        done = S.Completed(rel["release"], rel["sequence"], bundle.manifest_sha256, mode,
                           datetime.now(UTC).isoformat(timespec="seconds"),
                           {img.service: img.digest for img in images})
        write_completed(site, pool, done)
    except TvdeployError as exc:
        _audit(site, "bundle.import", [bundle_obj], outcome="failure", error=exc.message)
        raise
    jfile.remove()
    _audit(site, "bundle.import", [bundle_obj, *[
        {"type": "image", "name": svc, "digest": d} for svc, d in result.images.items()]])
    return result


def needed_base(images: list[BundleImage], shipped: frozenset[str]) -> dict[str, list[str]]:
    """Blobs the release uses but the bundle does not ship (a delta): digest -> services."""
    needed: dict[str, list[str]] = {}
    for img in images:
        for hexd, _size in img.blobs:
            if hexd not in shipped:
                needed.setdefault(f"sha256:{hexd}", []).append(img.service)
    return needed


def check_delta(site: Site, bf: BundleFile, images: list[BundleImage]) -> None:
    """A delta is refused, with the list, unless the site holds every blob it does not ship."""
    if not needed_base(images, bf.shipped):
        return
    if site.registry.mode == "site-registry":
        from tvdeploy.execute.site_registry import open_registry

        with open_registry(site) as reg:
            check_delta_on_registry(reg, images, bf.shipped, str(bf.bundle.path))
        return
    refusal = S.missing_base(needed_base(images, bf.shipped), _nodes_blobs(site))
    if refusal is not None:
        raise refusal


def check_delta_on_registry(reg: Registry, images: list[BundleImage], shipped: frozenset[str],
                            where: str) -> None:
    """Refuse a delta whose base blobs are not all in the site registry, before any push."""
    needed = needed_base(images, shipped)
    if not needed:
        return
    try:
        reg.ping()
    except ConnectionFailed as exc:
        raise RefusedError(f"{where}: a delta bundle needs the site registry it was made for, and "
                             f"{exc.message}") from None
    repo_of = {img.service: img.repo for img in images}
    repos = sorted(set(repo_of.values()))

    def held(digest: str) -> bool:
        # The repositories of the images using the blob first: the earlier release put it there.
        own = sorted({repo_of[svc] for svc in needed[digest]})
        return any(reg.blob_exists(repo, digest) for repo in own + [r for r in repos if r not in own])

    present = {d for d in needed if held(d)}
    refusal = S.missing_base(needed, present)
    if refusal is not None:
        raise refusal


# -- site-registry mode -------------------------------------------------------------------------

Archive = Callable[[], Iterator[bytes]]


def _registry_archive(bf: BundleFile, images: list[BundleImage]) -> tuple[str | None, Archive | None]:
    from tvdeploy.bundle.dockerload import stream

    img = next((i for i in images if i.service == IMAGE_KEY), None)
    if img is None:
        return None, None

    def archive() -> Iterator[bytes]:
        with bf.open() as fh:
            yield from stream([img.load_image()], lambda hexd, _size: bf.chunks(fh, hexd))

    return f"sha256:{img.config_hex}", archive


def _to_registry(site: Site, bf: BundleFile, images: list[BundleImage], pool: SSHPool, journal: S.Journal,
                 jfile: JournalFile, reporter: Reporter, result: ImportResult, now: datetime) -> None:
    from tvdeploy.execute.site_registry import ensure_registry, open_registry

    ep = endpoint(site)
    result.registry = ep.host
    image_id, archive = _registry_archive(bf, images)
    with open_registry(site) as reg:
        start = time.monotonic()
        deployed = ensure_registry(site, pool, reg, image_id, archive, reporter, now)
        result.seconds["registry"] = time.monotonic() - start
        if deployed.created or deployed.certificate_sha256:
            objects = [{"type": "service", "name": SERVICE, "node": ep.node, "address": ep.host}]
            if image_id:
                objects.append({"type": "image", "name": "registry", "digest": image_id})
            if deployed.certificate_sha256:
                objects.append({"type": "certificate", "name": "tv-registry",
                                "digest": f"sha256:{deployed.certificate_sha256}"})
            _audit(site, "registry.deploy", objects)
        holders: dict[str, str] = {}
        start = time.monotonic()
        with bf.open() as fh:
            for img in images:
                stats = push_image(reg, bf, fh, img, images, holders, journal, jfile, reporter)
                result.bytes_moved += stats.moved
                result.bytes_skipped += stats.skipped
                _audit(site, "bundle.import.image", [
                    {"type": "image", "name": f"{ep.host}/{img.repo}", "digest": img.digest,
                     "moved_bytes": str(stats.moved), "skipped_bytes": str(stats.skipped)}])
        result.seconds["push"] = time.monotonic() - start
        start = time.monotonic()
        read_back(reg, images)
        result.seconds["read_back"] = time.monotonic() - start
    for img in images:
        result.images[img.service] = ep.reference(img.repo, img.digest)
    reporter.info(f"{len(images)} images in {ep.host}: {format_size(result.bytes_moved)} moved, "
                  f"{format_size(result.bytes_skipped)} skipped (already on the site)")


def push_image(reg: Registry, bf: BundleFile, fh: BinaryIO, img: BundleImage, images: list[BundleImage],
               holders: dict[str, str], journal: S.Journal, jfile: JournalFile, reporter: Reporter) -> Moved:
    """Blobs first (present: skip; in another repository: mount; else stream), then the
    manifest by tag; a progress bar per image shows bytes moved and skipped."""
    stats = Moved()
    key = f"import.{img.service}"
    byte_task(reporter, key, img.service, img.size)
    seen: set[str] = set()
    for hexd, size in img.blobs:
        if hexd in seen:
            continue
        seen.add(hexd)
        digest = f"sha256:{hexd}"
        location = None
        if reg.blob_exists(img.repo, digest):
            present = True
        else:
            source = holders.get(hexd) or _find_elsewhere(reg, img, images, hexd)
            location = reg.mount_blob(img.repo, digest, source) if source else None
            present = source is not None and location is None
        if not present and hexd not in bf.shipped:
            raise RefusedError(f"{reg.where}: {img.repo}: base blob {digest} of the delta is gone from the "
                                 "registry")
        if present:
            stats.skipped += size
            stats.present += 1
            reporter.advance(key, size, description=_describe(img, stats))
        else:
            offset, _size = bf.where(hexd)
            reg.upload_blob(img.repo, digest, fh, offset, size, location=location,
                            progress=lambda n: reporter.advance(key, n))
            stats.moved += size
            stats.uploaded += 1
            reporter.advance(key, 0, description=_describe(img, stats))
        holders[hexd] = img.repo
        jfile.add(journal, {"blob": f"{img.repo}@{digest}"})
    reg.put_manifest(img.repo, img.tag, img.manifest)
    jfile.add(journal, {"image": img.service, "digest": img.digest})
    reporter.done(key, description=_describe(img, stats))
    reporter.event("import.image", service=img.service, digest=img.digest, moved=stats.moved, skipped=stats.skipped)
    return stats


def _describe(img: BundleImage, stats: Moved) -> str:
    return f"{img.service}: {format_size(stats.moved)} moved, {format_size(stats.skipped)} skipped"


def _find_elsewhere(reg: Registry, img: BundleImage, images: list[BundleImage], hexd: str) -> str | None:
    """Another repository of this release that already holds the blob (from an earlier import)."""
    for other in images:
        if other.repo != img.repo and any(h == hexd for h, _s in other.blobs) and \
                reg.blob_exists(other.repo, f"sha256:{hexd}"):
            return other.repo
    return None


def read_back(reg: Registry, images: list[BundleImage]) -> None:
    """Every manifest digest of the release, read back by digest and by tag."""
    for img in images:
        data, digest, _type = reg.get_manifest(img.repo, img.digest)
        if digest != img.digest or data != img.manifest:
            raise VerificationError(f"{reg.where}: {img.repo}@{img.digest}: read back differs from the bundle")
        tagged = reg.manifest_digest(img.repo, img.tag)
        if tagged != img.digest:
            raise VerificationError(f"{reg.where}: {img.repo}:{img.tag} points at {tagged}, expected {img.digest}")


# -- node-load mode --------------------------------------------------------------------------------

def _to_nodes(site: Site, bf: BundleFile, images: list[BundleImage], journal: S.Journal, jfile: JournalFile,
              reporter: Reporter, result: ImportResult) -> None:
    import threading

    from tvdeploy.execute.parallel import for_each

    lock = threading.Lock()

    def one(node: Any) -> Moved:
        stats = load_on_node(site, node, bf, images, reporter)
        with lock:
            for img in images:
                jfile.add(journal, {"loaded": f"{node.name}/{img.service}"})
        return stats

    start = time.monotonic()
    all_stats = for_each(site.nodes, one, limit=4, label=lambda n: f"node {n.name}")
    result.seconds["load"] = time.monotonic() - start
    result.bytes_moved = sum(s.moved for s in all_stats)
    result.bytes_skipped = sum(s.skipped for s in all_stats)
    result.nodes = [n.name for n in site.nodes]
    for img in images:
        result.images[img.service] = f"sha256:{img.config_hex}"
    reporter.info(f"{len(images)} images on {len(site.nodes)} node(s): {format_size(result.bytes_moved)} moved, "
                  f"{format_size(result.bytes_skipped)} skipped (already loaded)")


def load_on_node(site: Site, node: Any, bf: BundleFile, images: list[BundleImage], reporter: Reporter) -> Moved:
    """Load the images the node lacks (one streamed archive), then check every image id and tag."""
    import docker.errors

    from tvdeploy.bundle.dockerload import archive_size, stream
    from tvdeploy.execute.site_registry import LOAD_TIMEOUT, docker_client, load

    stats = Moved()
    api = docker_client(site, node, timeout=LOAD_TIMEOUT).api
    try:
        missing = []
        for img in images:
            try:
                api.inspect_image(img.load_image().image_id)
                stats.skipped += img.size
            except docker.errors.ImageNotFound:
                missing.append(img)
        key = f"load.{node.name}"
        if missing:
            loads = [i.load_image() for i in missing]
            absent = frozenset(h for i in missing for h, _s in i.layers if h not in bf.shipped)
            byte_task(reporter, key, f"{node.name}: loading {len(missing)} image(s)", archive_size(loads, absent))
            with bf.open() as fh:
                def counted() -> Iterator[bytes]:
                    for chunk in stream(loads, lambda hexd, _size: bf.chunks(fh, hexd), absent):
                        reporter.advance(key, len(chunk))
                        yield chunk
                load(api, counted(), node.name)
            stats.moved = sum(size for i in missing for h, size in i.blobs if h in bf.shipped)
            reporter.done(key, f"{node.name}: {len(missing)} image(s) loaded")
        for img in images:
            want = img.load_image().image_id
            try:
                info = api.inspect_image(want)
            except docker.errors.ImageNotFound:
                raise VerificationError(f"node {node.name}: image {img.service} ({want[:19]}) missing after load") \
                    from None
            if info.get("Id") != want:
                raise VerificationError(f"node {node.name}: image {img.service} has id {info.get('Id')}, "
                                        f"expected {want}")
            tag = img.load_image().tag
            if tag and tag not in (info.get("RepoTags") or []):
                repo, _, t = tag.rpartition(":")
                api.tag(want, repo, t)
    except docker.errors.APIError as exc:
        raise ConnectionFailed(f"node {node.name}: Docker API error: {exc.explanation or exc}") from None
    finally:
        api.close()
    return stats


# -- site inventory (for deltas) ---------------------------------------------------------------------

def site_inventory(site: Site, pool: SSHPool, signer: tuple[Any, str]) -> tuple[int, S.Completed | None, bytes]:
    """(number of blobs, last completed import, the signed HAVE.json bytes) of what the site holds,
    in ``tvdeploy.bundle.inventory``'s format (what ``bundle build --since`` reads)."""
    from tvdeploy.bundle.inventory import make_inventory
    from tvdeploy.release import site_inventory as inv

    last = S.latest([read_local_last(site), read_site_last(site, pool)])
    if site.registry.mode == "site-registry":
        from tvdeploy.execute.site_registry import open_registry

        with open_registry(site) as reg:
            blobs = inv.registry_blobs(reg)
    else:
        blobs = _nodes_blobs(site)
    release = None if last is None else {"release": last.release, "sequence": last.sequence,
                                         "images": last.images}
    return len(blobs), last, make_inventory(site.site.name, blobs, release, signer)


def _nodes_blobs(site: Site) -> set[str]:
    from tvdeploy.execute.parallel import for_each
    from tvdeploy.execute.site_registry import docker_client
    from tvdeploy.release import site_inventory as inv

    def one(node: Any) -> set[str]:
        api = docker_client(site, node).api
        try:
            return inv.node_blobs([api.inspect_image(i["Id"]) for i in api.images()])
        finally:
            api.close()

    sets = for_each(site.nodes, one, label=lambda n: f"node {n.name}")
    return set.intersection(*sets) if sets else set()
