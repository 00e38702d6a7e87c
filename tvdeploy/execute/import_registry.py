"""``site-registry`` mode of ``bundle import``: deploy the site registry's replicas when needed
(one per manager), catch up a replica that missed earlier imports, push each image's blobs
(present: skip; in another repository: mount; else stream from the bundle) and manifest to every
replica that is up, then read every manifest back from each, by digest and by tag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tvdeploy.audit.recorder import record
from tvdeploy.bundle.images import BundleFile, BundleImage, needed_base
from tvdeploy.bundle.sizes import format_size
from tvdeploy.errors import ConnectionFailed, RefusedError, VerificationError
from tvdeploy.execute.import_patches import drop_rebuilt
from tvdeploy.execute.import_records import ImportResult, JournalFile, Moved
from tvdeploy.execute.registry_sync import sync_replicas
from tvdeploy.execute.site_registry import Deployed, ensure_registry, open_replica
from tvdeploy.release import import_state as S
from tvdeploy.release.registry_address import IMAGE_KEY, SERVICE, endpoint

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.registry import Registry
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.reporting import Reporter


def check_delta_on_registry(reg: Registry, images: list[BundleImage], shipped: frozenset[str],
                            where: str, bf: BundleFile | None = None, workdir: Path | None = None) -> None:
    """Refuse a delta whose base blobs (patch bases included) are not all in the site registry,
    or one of whose patches does not rebuild its signed layer, before any push. The patched
    layers are rebuilt into *workdir* (``bf.rebuilt``: the push sends those files)."""
    needed = needed_base(images, shipped, bf.patches if bf is not None else None)
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
    if bf is not None and bf.patches:
        from tvdeploy.execute.import_patches import rebuild_from_registry

        if workdir is None:
            raise ValueError("a delta with patches needs a folder for the rebuilt layers")
        bf.rebuilt = rebuild_from_registry(reg, bf, images, workdir)


Archive = Callable[[], Iterator[bytes]]


def registry_archive(bf: BundleFile, images: list[BundleImage]) -> tuple[str | None, Archive | None]:
    from tvdeploy.bundle.dockerload import stream

    img = next((i for i in images if i.service == IMAGE_KEY), None)
    if img is None:
        return None, None

    def archive() -> Iterator[bytes]:
        with bf.open() as fh:
            yield from stream([img.load_image()], lambda hexd, _size: bf.chunks(fh, hexd))

    return f"sha256:{img.config_hex}", archive


def to_registry(site: Site, bf: BundleFile, images: list[BundleImage], pool: SSHPool, journal: S.Journal,
                jfile: JournalFile, reporter: Reporter, result: ImportResult, now: datetime) -> None:
    """Every replica that is up: deployed (``ensure_registry``), caught up with the others
    (``sync_replicas``), then given this bundle's images. The first replica up is filled in
    this thread with the progress bars and the journal; the others at the same time, quietly.
    ``bytes_moved`` / ``bytes_skipped`` are the first replica's (what a resume skips);
    ``result.replicas`` says, per manager, "filled" or why not."""
    from concurrent.futures import ThreadPoolExecutor

    ep = endpoint(site)
    result.registry = ep.host
    image_id, archive = registry_archive(bf, images)
    start = time.monotonic()
    deployed = ensure_registry(site, pool, image_id, archive, reporter, now)
    result.seconds["registry"] = time.monotonic() - start
    _record_deploy(site, deployed, image_id)
    result.replicas = {node: f"down: {why}" for node, why in deployed.down.items()}
    targets = [_Target(r.node, open_replica(site, r)) for r in deployed.up]
    try:
        start = time.monotonic()
        sync_replicas({t.node: t.reg for t in targets}, reporter)
        result.seconds["sync"] = time.monotonic() - start
        first, others = targets[0], targets[1:]
        start = time.monotonic()
        try:
            with bf.open() as fh, ThreadPoolExecutor(max_workers=max(1, len(others)),
                                                     thread_name_prefix="tvdeploy-replica") as workers:
                for img in images:
                    pending = [(t, workers.submit(_push_quietly, t, bf, img, images)) for t in others]
                    stats = push_image(first.reg, bf, fh, img, images, first.holders, journal, jfile, reporter)
                    for t, fut in pending:
                        try:
                            fut.result()
                        except ConnectionFailed as exc:  # that replica went away: the next import fills it
                            others.remove(t)
                            result.replicas[t.node] = f"failed: {exc.message}"
                            reporter.warn(f"registry replica on {t.node} left out of this import: {exc.message}")
                    result.bytes_moved += stats.moved
                    result.bytes_skipped += stats.skipped
                    record(site, "bundle.import.image", objects=[
                        {"type": "image", "name": f"{ep.host}/{img.repo}", "digest": img.digest,
                         "moved_bytes": str(stats.moved), "skipped_bytes": str(stats.skipped),
                         "replicas": ",".join(t.node for t in [first, *others])}])
        finally:
            drop_rebuilt(bf)  # patched layers rebuilt by check_delta_on_registry
        result.seconds["push"] = time.monotonic() - start
        start = time.monotonic()
        for t in [first, *others]:
            read_back(t.reg, images)
            result.replicas[t.node] = "filled"
        result.seconds["read_back"] = time.monotonic() - start
    finally:
        for t in targets:
            t.reg.close()
    for img in images:
        result.images[img.service] = ep.reference(img.repo, img.digest)
    filled = sum(1 for state in result.replicas.values() if state == "filled")
    reporter.info(f"{len(images)} images in {ep.host} ({filled} of {len(ep.replicas)} replicas): "
                  f"{format_size(result.bytes_moved)} moved, {format_size(result.bytes_skipped)} skipped "
                  "(already on the site)")


@dataclass
class _Target:
    node: str
    reg: Registry
    holders: dict[str, str] = field(default_factory=dict)


class _Unjournaled(JournalFile):
    """The journal of a replica other than the first: the resume is driven by the first one
    (a replica that missed blobs gets them on the next import: missing blobs only)."""

    def __init__(self) -> None:  # noqa: D107 - no file
        pass

    def add(self, journal: S.Journal, rec: dict[str, Any]) -> None:
        return None


def _push_quietly(target: _Target, bf: BundleFile, img: BundleImage, images: list[BundleImage]) -> Moved:
    from tvdeploy.reporting import NullReporter

    scratch = S.Journal("", "", 0, "site-registry")
    with bf.open() as fh:
        return push_image(target.reg, bf, fh, img, images, target.holders, scratch, _Unjournaled(), NullReporter())


def _record_deploy(site: Site, deployed: Deployed, image_id: str | None) -> None:
    if not (deployed.created or deployed.certificates or deployed.image_loaded):
        return
    ep = endpoint(site)
    objects = [{"type": "service", "name": SERVICE, "address": ep.host,
                "replicas": ",".join(r.node for r in deployed.up)}]
    if image_id:
        objects.append({"type": "image", "name": "registry", "digest": image_id,
                        "loaded_on": ",".join(deployed.image_loaded)})
    for node, sha in deployed.certificates.items():
        objects.append({"type": "certificate", "name": f"{SERVICE}@{node}", "digest": f"sha256:{sha}"})
    record(site, "registry.deploy", objects=objects)


def push_image(reg: Registry, bf: BundleFile, fh: BinaryIO, img: BundleImage, images: list[BundleImage],
               holders: dict[str, str], journal: S.Journal, jfile: JournalFile, reporter: Reporter) -> Moved:
    """Blobs first (present: skip; in another repository: mount; else stream), then the
    manifest by tag; a progress bar per image shows bytes moved and skipped."""
    stats = Moved()
    key = f"import.{img.service}"
    reporter.task(key, img.service, total=img.size, unit="bytes")
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
        if not present and hexd not in bf.shipped and hexd not in bf.patches:
            raise RefusedError(f"{reg.where}: {img.repo}: base blob {digest} of the delta is gone from the "
                               "registry")
        if present:
            stats.skipped += size
            stats.present += 1
            reporter.advance(key, size, description=_describe(img, stats))
        elif hexd in bf.patches:
            if hexd not in bf.rebuilt:
                raise RefusedError(f"{reg.where}: {img.repo}: patched layer {digest} was not rebuilt before the push")
            with open(bf.rebuilt[hexd], "rb") as layer:  # rebuilt and checked by check_delta_on_registry
                reg.upload_blob(img.repo, digest, layer, 0, size, location=location,
                                progress=lambda n: reporter.advance(key, n))
            stats.moved += size
            stats.uploaded += 1
            reporter.advance(key, 0, description=_describe(img, stats))
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
