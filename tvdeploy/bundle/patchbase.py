"""Base layers for byte-level patches at build time: which base for which new layer, where its
bytes come from, and the patcher the bundle writer calls.

Which base (``choose_bases``, pure): a new layer the site lacks is patched against a layer the
site holds (in the signed site inventory) at the same position of another image of the same
repository in the build engine (what the deployed release of that service was built as: e.g.
``trueverit/cloud:1``'s application layer for ``trueverit/cloud:2``'s); among several such
images, the one sharing the most layers with the new image first (then the later tag in sort
order), then held layers at the nearest positions, upper layers (the application's) before
lower ones: up to ``MAX_CANDIDATES`` bases per layer. The patcher tries each and keeps the
smallest patch: the base closest by content among them.
A patch is kept only when it is at most ``KEEP`` (9/10) of the layer's size: a patch that saves
less is not worth a rebuild on the site and a base the site must keep (a layer tar's headers
compress a little even against an unrelated base). So a poor choice costs build time, never
bundle size.

Where the bytes come from (``fetch_bases``): one ``docker save`` of the images holding them,
each layer hashed while spooled to a work folder; only layers whose bytes hash to a wanted
digest are kept (a name in the save stream is no proof of content).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from tvdeploy.bundle.patch import MAX_LAYER, Base, PatchError, Readable, make_patch, read_chunks
from tvdeploy.bundle.savestream import ImageHint

if TYPE_CHECKING:
    from tvdeploy.connectors.build_engine import Engine

log = logging.getLogger(__name__)

READ = 1024 * 1024
KEEP = (9, 10)
MAX_CANDIDATES = 3  # bases tried per layer
MAX_LIST = 16 * 1024 * 1024


def repository(ref: str) -> str:
    """``trueverit/cloud`` of ``trueverit/cloud:2`` (a registry port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, tag = name.rpartition(":")
    return head if head and "/" not in tag else name


def _hex(diff_id: str) -> str:
    return diff_id.removeprefix("sha256:")


@dataclass(frozen=True)
class Choice:
    base: str  # hex of the base layer (the site holds it)
    ref: str  # an engine image holding it


def choose_bases(new: list[ImageHint], candidates: list[ImageHint], have: frozenset[str],
                 limit: int = MAX_CANDIDATES) -> dict[str, list[Choice]]:
    """For each layer of the *new* images that the site lacks (not in *have*, hex), up to
    *limit* distinct held layers of *candidate* images of the same repository to patch against,
    best guess first. Pure."""
    out: dict[str, list[Choice]] = {}
    for img in new:
        layers = [_hex(d) for d in img.diff_ids]
        same_repo = [c for c in candidates if repository(c.ref) == repository(img.ref) and c.ref != img.ref]
        same_repo.sort(key=lambda c: (len(set(layers) & {_hex(d) for d in c.diff_ids}), c.ref), reverse=True)
        for pos, layer in enumerate(layers):
            if layer in have or layer in out:
                continue
            choices = _near_position(pos, layer, same_repo, have, limit)
            if choices:
                out[layer] = choices
    return out


def _near_position(pos: int, layer: str, candidates: list[ImageHint], have: frozenset[str],
                   limit: int) -> list[Choice]:
    out: list[Choice] = []
    for distance in range(0, 1 + max((len(c.diff_ids) for c in candidates), default=0)):
        for cand in candidates:
            held = [_hex(d) for d in cand.diff_ids]
            for p in (pos + distance, pos - distance):
                if 0 <= p < len(held) and held[p] in have and held[p] != layer and \
                        all(c.base != held[p] for c in out):
                    out.append(Choice(held[p], cand.ref))
                    if len(out) == limit:
                        return out
    return out


# -- the engine side -----------------------------------------------------------------------------

def engine_candidates(engine: Engine, docker_host: str, new: list[ImageHint]) -> list[ImageHint]:
    """Images in the engine of the same repositories as *new* (other tags), with their layers."""
    from tvdeploy.connectors.build_engine import _error, _request, hints

    status, body = _request(engine, "/images/json")
    if status != 200:
        raise engine.fail(_error(engine, status, body))
    with body:
        try:
            listing = json.loads(body.read(MAX_LIST))
        except ValueError:
            raise engine.fail("unreadable image list") from None
    repos = {repository(h.ref) for h in new}
    own = {h.ref for h in new}
    refs = sorted({tag for img in listing if isinstance(img, dict) for tag in (img.get("RepoTags") or [])
                   if isinstance(tag, str) and repository(tag) in repos and tag not in own})
    return hints(engine, docker_host, refs) if refs else []


def fetch_bases(engine: Engine, choices: dict[str, list[Choice]], workdir: Path) -> dict[str, Path]:
    """The bytes of each chosen base layer, in *workdir*: base hex -> file. Layers over
    MAX_LAYER and those the engine did not deliver are left out (their layers ship whole)."""
    from tvdeploy.bundle import tarin, tarout
    from tvdeploy.connectors.build_engine import save_stream

    wanted = {c.base for cs in choices.values() for c in cs}
    refs = sorted({c.ref for cs in choices.values() for c in cs})
    if not refs:
        return {}
    with save_stream(engine, engine.docker_host, refs) as stream:
        try:
            got = layers_from_save(stream, wanted, workdir)
        except (tarin.TarStreamError, tarout.TruncatedSource, PatchError) as exc:
            raise engine.fail(f"docker save of the patch bases ({', '.join(refs)}): {exc}") from None
    return got


def layers_from_save(stream: Any, wanted: set[str], workdir: Path) -> dict[str, Path]:
    """The layers of a ``docker save`` *stream* whose bytes hash to a *wanted* hex digest, each
    spooled to a file in *workdir* (layers over MAX_LAYER are skipped): hex -> file. Raises
    tarin.TarStreamError, tarout.TruncatedSource or PatchError for a broken stream."""
    from tvdeploy.bundle import tarin

    got: dict[str, Path] = {}
    for member, data in tarin.members(stream):
        name = member.name.removeprefix("./")
        if not member.isfile() or member.size > MAX_LAYER or not (
                name.endswith("/layer.tar") or name.startswith("blobs/sha256/")):
            continue
        hexd = _spool(data, member.size, workdir)
        if hexd in wanted and hexd not in got:
            got[hexd] = workdir / hexd
        else:
            (workdir / hexd).unlink(missing_ok=True)
        if set(got) >= wanted:
            break
    return got


def _spool(data: Readable, size: int, workdir: Path) -> str:
    tmp = workdir / "incoming"
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for chunk in read_chunks(data, size):
            digest.update(chunk)
            out.write(chunk)
    hexd = digest.hexdigest()
    os.replace(tmp, workdir / hexd)
    return hexd


def base_files(choices: dict[str, list[Choice]], fetched: dict[str, Path]) -> dict[str, list[tuple[str, Path]]]:
    """What ``writer.Since.bases`` takes: new layer hex -> [(base hex, file of its bytes)]."""
    out = {layer: [(c.base, fetched[c.base]) for c in cs if c.base in fetched] for layer, cs in choices.items()}
    return {layer: bases for layer, bases in out.items() if bases}


# -- the writer's patcher ------------------------------------------------------------------------

class FilePatcher:
    """``LayoutWriter.patcher``: the layer just written is read back from the bundle and
    patched against each candidate base in turn, loaded from its file (checked against its
    digest again); the smallest patch wins (the base closest by content), and each try gives
    up as soon as it would not beat the best so far."""

    def __init__(self, bases: dict[str, list[tuple[str, Path]]]) -> None:
        self.bases = bases

    def __call__(self, out: BinaryIO, data_offset: int, hexd: str, size: int) -> tuple[str, bytes] | None:
        if size > MAX_LAYER:
            return None
        best: tuple[str, bytes] | None = None
        limit = size * KEEP[0] // KEEP[1]
        for base_hex, path in self.bases.get(hexd, []):
            with open(path, "rb") as fh:
                base = Base.load(base_hex, _all_chunks(fh), os.fstat(fh.fileno()).st_size)
            out.seek(data_offset)
            made = make_patch(base, read_chunks(out, size), size, limit=limit)
            if made is not None and made.result_hex == hexd:
                best, limit = (base_hex, made.patch), len(made.patch)
        return best


def _all_chunks(fh: BinaryIO) -> Iterator[bytes]:
    while data := fh.read(READ):
        yield data
