"""Write a bundle: one uncompressed tar holding the OCI layout, ``release.json``,
``inventory.json``, ``manifest.json`` and an empty ``signatures/`` folder.

The tar is written to a temporary file beside the output and renamed into place only when
complete, so an interrupted build never leaves a bundle that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tvdeploy.bundle import tarout
from tvdeploy.bundle.layout import FORMAT, FileRecord, LayoutWriter, json_bytes
from tvdeploy.bundle.savestream import ImageHint, SavedImage, SaveStreamError, convert
from tvdeploy.errors import TvdeployError
from tvdeploy.release.spec import ReleaseSpec, normalize_reference
from tvdeploy.reporting import NullReporter, Reporter

TOP_FILES = ("oci-layout", "index.json", "release.json", "inventory.json", "manifest.json")


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    release: dict[str, Any]
    manifest_sha256: str
    size: int
    blobs: int
    expected: dict[str, int] | None = None  # a delta: layer hex -> size, not shipped
    patches: dict[str, tuple[str, str, int]] | None = None  # layer hex -> (base hex, patch hex, size)
    engine_packages: dict[str, Any] | None = None  # the manifest's engine_packages section, if any

    @property
    def is_delta(self) -> bool:
        return self.expected is not None


def release_document(spec: ReleaseSpec, images: dict[str, SavedImage]) -> dict[str, Any]:
    return {
        "release": spec.release,
        "sequence": spec.sequence,
        "images": {
            svc: {"reference": ref, "digest": f"sha256:{images[svc].manifest.sha256}"}
            for svc, ref in spec.images.items()
        },
    }


def inventory_document(spec: ReleaseSpec, images: dict[str, SavedImage]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for svc, ref in spec.images.items():
        img = images[svc]
        doc[svc] = {
            "reference": ref,
            "digest": f"sha256:{img.manifest.sha256}",
            "config": f"sha256:{img.config.sha256}",
            "created": img.created,
            "labels": img.labels,
            "layers": [{"digest": f"sha256:{lay.sha256}", "size": lay.size} for lay in img.layers],
            "size": img.config.size + sum(lay.size for lay in img.layers),
        }
    return {"images": doc}


def manifest_document(files: dict[str, FileRecord], expected: dict[str, int] | None = None,
                      since: dict[str, Any] | None = None,
                      patches: dict[str, tuple[str, str, int]] | None = None,
                      engine_packages: dict[str, Any] | None = None) -> dict[str, Any]:
    """The file manifest; for a delta also the layers it expects on the site (digest, size),
    which inventory it was built against, and the layers it ships as patches (if any)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "files": {p: {"size": r.size, "sha256": r.sha256} for p, r in sorted(files.items())},
    }
    if expected is not None:
        doc["expected_on_site"] = [{"digest": f"sha256:{h}", "size": n} for h, n in sorted(expected.items())]
        doc["since"] = dict(since or {})
    if patches:
        from tvdeploy.bundle.statement import patch_entries

        doc["patches"] = patch_entries(patches)
    if engine_packages:  # tvdeploy.bundle.engine_packages
        doc["engine_packages"] = engine_packages
    return doc


def expected_blobs(images: dict[str, SavedImage], layout: LayoutWriter) -> dict[str, int]:
    """Layers of the release that the bundle does not carry: the site must hold them."""
    return {lay.sha256: lay.size for img in images.values() for lay in img.layers
            if not layout.has_blob(lay.sha256) and lay.sha256 not in layout.patched}


def match_images(spec: ReleaseSpec, saved: list[SavedImage],
                 hints: list[ImageHint]) -> dict[str, SavedImage]:
    """Which saved image each service asked for: by image id when the engine told us, else by
    tag."""
    by_config = {img.config.sha256: img for img in saved}
    by_tag = {tag: img for img in saved for tag in img.repo_tags}
    hint_of = {h.ref: h for h in hints}
    out: dict[str, SavedImage] = {}
    for svc, ref in spec.images.items():
        hint = hint_of.get(ref)
        img = by_config.get(hint.config_hex) if hint else None
        img = img or by_tag.get(normalize_reference(ref)) or by_tag.get(ref)
        if img is None:
            raise TvdeployError(f"images.{svc}: {ref} is not in the engine's docker save stream")
        out[svc] = img
    return out


@contextlib.contextmanager
def _temporary_beside(output: Path) -> Iterator[tuple[BinaryIO, Path]]:
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    path = Path(tmp)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w+b") as fh:
            yield fh, path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Since:
    """A delta's base: the layer digests (hex) the site holds, and where that list came from
    (site, release: recorded in the bundle's manifest.json for people reading it)."""

    have: frozenset[str]
    about: dict[str, Any]
    # Byte-level patches: new layer hex -> candidate (base layer hex, file of the base's bytes).
    bases: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)


def write_bundle(output: Path, spec: ReleaseSpec, stream: tarout.Source, *,
                 hints: list[ImageHint] | None = None, reporter: Reporter | None = None,
                 source_name: str = "docker save stream", since: Since | None = None,
                 follower: Any = None, debs: Any = None) -> BuiltBundle:
    """Convert the ``docker save`` *stream* of the spec's images into the bundle *output*; with
    *since*, a delta that leaves out the layers the site holds. A *follower*
    (tvdeploy.bundle.compress.Follower) compresses the bundle as it is written, up to its
    end-of-archive blocks (signatures are appended there); the caller finishes it. *debs*
    ((Platform, [DebFile]): tvdeploy.bundle.engine_packages) adds Docker Engine packages."""
    reporter = reporter or NullReporter()
    if output.is_dir():
        raise TvdeployError(f"{output}: is a directory, expected the bundle file to write")
    if not output.parent.is_dir():
        raise TvdeployError(f"{output.parent}: folder does not exist")
    try:
        return _write(output, spec, stream, hints or [], reporter, source_name, since, follower, debs)
    except OSError as exc:  # reading is guarded in convert(): this is the output
        raise TvdeployError(f"{output}: cannot write: {exc.strerror or exc}") from None


def _write(output: Path, spec: ReleaseSpec, stream: tarout.Source, hints: list[ImageHint],
           reporter: Reporter, source_name: str, since: Since | None, follower: Any,
           debs: Any = None) -> BuiltBundle:
    with _temporary_beside(output) as (fh, tmp):
        layout = LayoutWriter(fh, skip=since.have if since else frozenset())
        if follower is not None:
            follower.attach(tmp)
            layout.on_stable = follower.advance
        if since is not None and since.bases:
            from tvdeploy.bundle.patchbase import FilePatcher

            layout.patcher = FilePatcher(since.bases)
        layout.start()
        try:
            saved = convert(stream, layout, hints=hints, reporter=reporter)
        except SaveStreamError as exc:
            raise TvdeployError(f"{source_name}: {exc}") from None
        images = match_images(spec, saved, hints)
        for svc, ref in spec.images.items():
            layout.add_ref(ref, images[svc].manifest)
        engine_doc = None
        if debs is not None:
            from tvdeploy.bundle.engine_packages import add_to_layout

            engine_doc = add_to_layout(layout, *debs).to_json()
        layout.finish_index()
        release = release_document(spec, images)
        layout.add_file("release.json", json_bytes(release))
        layout.add_file("inventory.json", json_bytes(inventory_document(spec, images)))
        files = dict(layout.files)
        expected = expected_blobs(images, layout) if since is not None else None
        patches = dict(layout.patched) if since is not None else None
        manifest_doc = manifest_document(files, expected, since.about if since else None, patches, engine_doc)
        manifest = tarout.write_bytes(fh, "manifest.json", json_bytes(manifest_doc))
        tarout.write_dir(fh, "signatures")
        layout.stable()  # signing rewrites from the end-of-archive blocks on, never before
        fh.write(tarout.END_OF_ARCHIVE)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())
        size = fh.tell()
        os.replace(tmp, output)
    return BuiltBundle(output, release, manifest.sha256, size, len(layout.offsets), expected, patches, engine_doc)


def build_from_engine(output: Path, spec: ReleaseSpec, docker_host: str,
                      reporter: Reporter | None = None,
                      while_staging: Callable[[], None] | None = None,
                      early: Any = None, since: Since | None = None, patches: bool = True,
                      follower: Any = None, debs: Any = None) -> BuiltBundle:
    """Build *output* from the build engine at *docker_host*.

    The save request goes out first (or went out already: *early*, from engine.start_early):
    the engine stages every image on its disk before the first byte, most of a ``docker
    save``'s time, and the inspections for progress and *while_staging* (e.g. unlocking the
    operator key) run meanwhile. A delta (*since*) with *patches* also fetches the base layers
    of byte-level patches meanwhile (tvdeploy.bundle.patchbase), into a folder beside *output*
    that is removed afterwards."""
    from tvdeploy.connectors import build_engine as engine

    client = engine.connect(docker_host)
    refs = list(dict.fromkeys(spec.images.values()))
    stream = early if early is not None and early.refs == refs else engine.save_stream(client, docker_host, refs)
    if early is not None and stream is not early:
        early.close()
    with stream, tempfile.TemporaryDirectory(dir=output.parent if output.parent.is_dir() else None,
                                             prefix=f".{output.name}.bases-") as work:
        hints = engine.hints(client, docker_host, refs)
        if while_staging is not None:
            while_staging()
        if since is not None and patches:
            since = _with_bases(since, client, docker_host, hints, Path(work), reporter or NullReporter())
        stream.wait()
        return write_bundle(output, spec, stream, hints=hints, reporter=reporter,
                            source_name=f"build engine {docker_host}", since=since, follower=follower,
                            debs=debs)


def _with_bases(since: Since, client: Any, docker_host: str, hints: list[ImageHint], work: Path,
                reporter: Reporter) -> Since:
    """*since* with the base layers for patches; an engine that cannot list or save them gives
    a layer-level delta (and a warning), not a failed build."""
    import dataclasses

    from tvdeploy.bundle import patchbase

    try:
        choices = patchbase.choose_bases(hints, patchbase.engine_candidates(client, docker_host, hints),
                                         since.have)
        fetched = patchbase.fetch_bases(client, choices, work)
    except TvdeployError as exc:
        reporter.warn(f"no byte-level patches in this delta: {exc.message}")
        return since
    return dataclasses.replace(since, bases=patchbase.base_files(choices, fetched))
