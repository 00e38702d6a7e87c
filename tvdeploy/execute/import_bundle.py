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

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit.recorder import record
from tvdeploy.bundle.images import BundleFile, BundleImage, needed_base
from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.execute.import_nodes import nodes_blobs, to_nodes
from tvdeploy.execute.import_records import (
    ImportResult,
    JournalFile,
    import_lock,
    read_local_last,
    read_site_last,
    write_completed,
)
from tvdeploy.execute.import_registry import check_delta_on_registry, to_registry
from tvdeploy.execute.release_records import record_import_in_swarm
from tvdeploy.execute.site_lock import hold_if_swarm
from tvdeploy.execute.site_registry import catch_up_replicas, open_registry
from tvdeploy.release import import_state as S
from tvdeploy.release.records import ImportRecord

if TYPE_CHECKING:
    from tvdeploy.bundle.chunkbundle import PathVerified
    from tvdeploy.bundle.reader import Bundle
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.reporting import Reporter


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
        record(site, "bundle.import", objects=[_bundle_object(bundle)], outcome="refused", error=exc.message)
        raise
    return verified, last


def policy_gate(site: Site, site_path: Path, verified: PathVerified, trust_path: Path) -> None:
    """The image and bundle rules (tvdeploy.policy.gate) over the verified bundle, before any
    change: refused naming the rules. A chunk folder is read through its chunks."""
    from tvdeploy.policy.gate import check_bundle

    bundle = verified.verified.bundle
    bf = BundleFile(verified)
    with bf.open() as fh:
        result = check_bundle(site, site_path, Path(bundle.path), trust_root=trust_path,
                              fileobj=fh if verified.chunks is not None else None)
    if result.blocking:
        message = result.message()
        record(site, "bundle.import", objects=[_bundle_object(bundle)], outcome="refused", error=message[:500])
        raise RefusedError(message)


def _bundle_object(bundle: Bundle) -> dict[str, str]:
    rel = bundle.release
    return {"type": "bundle", "name": str(bundle.path), "digest": f"sha256:{bundle.manifest_sha256}",
            "release": str(rel["release"]), "sequence": str(rel["sequence"])}


def import_verified(site: Site, verified: PathVerified, pool: SSHPool, reporter: Reporter,
                    now: datetime | None = None) -> ImportResult:
    """Steps 3-4 for a bundle that passed ``verify_and_check``."""
    bf = BundleFile(verified)
    rel = bf.bundle.release
    with import_lock(site), hold_if_swarm(site, f"bundle import {rel['release']}", reporter):
        return _import_locked(site, verified, bf, pool, reporter, now)


def _import_locked(site: Site, verified: PathVerified, bf: BundleFile, pool: SSHPool, reporter: Reporter,
                   now: datetime | None) -> ImportResult:
    bundle = bf.bundle
    rel = bundle.release
    mode = site.registry.mode
    bundle_obj = _bundle_object(bundle)
    images = bf.images()
    if mode == "site-registry":
        catch_up_replicas(site, reporter)  # a replica that missed an import gets it (and a delta's bases)
    try:
        check_delta(site, bf, images)  # before anything is written, even the journal
    except RefusedError as exc:
        record(site, "bundle.import", objects=[bundle_obj], outcome="refused", error=exc.message)
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
    record(site, "bundle.import.start", objects=[
        bundle_obj, {"type": "import", "name": mode, "resumed": "yes" if resumed else "no"}, *signers])
    result = ImportResult(rel["release"], rel["sequence"], mode, bundle.manifest_sha256, resumed)
    try:
        if mode == "site-registry":
            to_registry(site, bf, images, pool, journal, jfile, reporter, result, now or datetime.now(UTC))
        else:
            to_nodes(site, bf, images, journal, jfile, reporter, result)
        done = S.Completed(rel["release"], rel["sequence"], bundle.manifest_sha256, mode,
                           datetime.now(UTC).isoformat(timespec="seconds"),
                           {img.service: img.digest for img in images})
        write_completed(site, pool, done)
        record_import_in_swarm(site, ImportRecord(
            rel["release"], rel["sequence"], bundle.manifest_sha256, done.time, dict(done.images),
            {img.service: img.repo for img in images}, tuple(verified.verified.signers), mode), reporter.warn)
    except TvdeployError as exc:
        record(site, "bundle.import", objects=[bundle_obj], outcome="failure", error=exc.message)
        raise
    jfile.remove()
    record(site, "bundle.import", objects=[bundle_obj, *[
        {"type": "image", "name": svc, "digest": d} for svc, d in result.images.items()]])
    return result


def check_delta(site: Site, bf: BundleFile, images: list[BundleImage]) -> None:
    """A delta is refused, with the list, unless the site holds every blob it does not ship."""
    if not needed_base(images, bf.shipped, bf.patches):
        return
    if site.registry.mode == "site-registry":
        with open_registry(site) as reg:
            check_delta_on_registry(reg, images, bf.shipped, str(bf.bundle.path), bf, _rebuilt_dir(site))
        return
    refusal = S.missing_base(needed_base(images, bf.shipped, bf.patches), nodes_blobs(site))
    if refusal is not None:
        raise refusal
    if bf.patches:
        from tvdeploy.execute.import_patches import rebuild_for_nodes

        bf.rebuilt = rebuild_for_nodes(site, bf, _rebuilt_dir(site))


def _rebuilt_dir(site: Site) -> Path:
    """Where patched layers are rebuilt before the push or load (removed after it)."""
    from tvdeploy.execute.import_records import imports_dir

    work = imports_dir(site) / "rebuilt"
    work.mkdir(parents=True, exist_ok=True)
    return work


def site_inventory(site: Site, pool: SSHPool, signer: tuple[Any, str]) -> tuple[int, S.Completed | None, bytes]:
    """(number of blobs, last completed import, the signed HAVE.json bytes) of what the site holds,
    in ``tvdeploy.bundle.inventory``'s format (what ``bundle build --since`` reads)."""
    from tvdeploy.bundle.inventory import make_inventory
    from tvdeploy.release import site_inventory as inv

    last = S.latest([read_local_last(site), read_site_last(site, pool)])
    if site.registry.mode == "site-registry":
        with open_registry(site) as reg:
            blobs = inv.registry_blobs(reg)
    else:
        blobs = nodes_blobs(site)
    release = None if last is None else {"release": last.release, "sequence": last.sequence,
                                         "images": last.images}
    return len(blobs), last, make_inventory(site.site.name, blobs, release, signer)


