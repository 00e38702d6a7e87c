"""``bundle build``: the build engine's images into one bundle tar, then optionally signed and
split into chunks for removable media. Each step is a record in the operator's global audit log
(bundle.build, bundle.sign, bundle.split); ``bundle split`` records its split the same way.

The engine stages every image on its disk before it sends a byte, so the save request goes out
first and the release spec, the delta base and the keys are read (and the audit key unlocked)
while it stages: the modules for that are imported after the request is sent. With ``compress``
the signed plain bundle is written beside the output first, then compressed into it (contents,
digests and signatures are those of the plain one) and removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.connectors.build_engine import start_early

if TYPE_CHECKING:
    from tvdeploy.bundle.chunksplit import SplitResult
    from tvdeploy.bundle.writer import BuiltBundle, Since
    from tvdeploy.release.spec import ReleaseSpec
    from tvdeploy.reporting import Reporter

Signer = tuple[Any, str]  # (Ed25519 private key, key id)


@dataclass(frozen=True)
class Built:
    bundle: BuiltBundle
    split: SplitResult | None = None  # with a chunk size: the chunk folder
    compressed: bool = False


def build_bundle(output: Path, spec_path: Path, engine: str, reporter: Reporter, *, since_file: Path | None = None,
                 inventory_keys: list[Path] | None = None, keys: list[str] | None = None,
                 passphrase: str | None = None, chunk_size: int | None = None, patches: bool = True,
                 compress: bool = False, engine_packages: str | None = None) -> Built:
    """Build *output* (with *chunk_size*: the chunk folder *output*), signed by *keys*; a delta
    ships byte-level patches unless *patches* is off; *compress*: the signed bundle is written
    zstd-compressed (tvdeploy.bundle.compress), then split if asked. *engine_packages* (a
    platform, e.g. ``debian-12``) adds Docker Engine's packages (tvdeploy.execute.engine_packages)."""
    from contextlib import ExitStack

    early = start_early(engine, spec_path)
    stack = ExitStack()
    try:
        from tvdeploy.keys.store import load_signers
        from tvdeploy.release.spec import load_release_spec

        spec = load_release_spec(spec_path)
        since = load_since(since_file, inventory_keys or [])
        signers = load_signers(keys or [], passphrase)
        from tvdeploy.execute.engine_packages import resolved

        debs = stack.enter_context(resolved(engine_packages or spec.engine_packages, output, reporter))
        opts = BuildOptions(patches, compress, debs)
        if chunk_size is not None:
            return _build_split(output, spec, engine, since, early, chunk_size, keys or [], signers, reporter, opts)
        plain = _plain_path(output) if compress else output
        follower = _follower(output) if compress else None
        try:
            built = _build(plain, spec, engine, since, early, reporter, label=output if compress else None,
                           patches=patches, follower=follower, debs=debs)
            if signers:
                sign_built(plain, signers)
            if follower is not None:
                _record_compressed(follower.finish())
        finally:
            if follower is not None:
                follower.abort()
                plain.unlink(missing_ok=True)
        return Built(dataclasses.replace(built, size=output.stat().st_size), compressed=compress)
    finally:
        stack.close()
        if early is not None:
            early.close()


@dataclass(frozen=True)
class BuildOptions:
    patches: bool = True
    compress: bool = False
    debs: Any = None  # tvdeploy.execute.engine_packages.Resolved


def _plain_path(output: Path) -> Path:
    """Where the plain bundle is written before it is compressed into *output*: beside it."""
    return output.parent / f".{output.name}.plain"


def _follower(output: Path) -> Any:
    """The compressor that follows the bundle writer (compresses while the bundle is built)."""
    from tvdeploy.bundle.compress import Follower

    return Follower(output)


def _compress(plain: Path, output: Path, reporter: Reporter) -> None:
    from tvdeploy.bundle.compress import compress_file

    _record_compressed(compress_file(plain, output, reporter=reporter))


def _record_compressed(done: Any) -> None:
    from tvdeploy.audit.recorder import record_global

    record_global("bundle.compress", objects=[{"type": "bundle", "name": str(done.path.resolve()),
                                               "size": str(done.size), "plain_size": str(done.plain_size)}])


def load_since(path: Path | None, key_files: list[Path]) -> Since | None:
    """The delta base from a signed site inventory, checked against *key_files* (or the local
    operator key)."""
    if path is None:
        if key_files:
            from tvdeploy.errors import RefusedError

            raise RefusedError("--inventory-key: only meaningful with --since HAVE.json")
        return None
    from tvdeploy.bundle.delta import since
    from tvdeploy.bundle.inventory import read_inventory
    from tvdeploy.keys.store import read_public_key_file

    keys = [read_public_key_file(f) for f in key_files] or None
    return since(read_inventory(path, keys))


def _build(output: Path, spec: ReleaseSpec, engine: str, since: Since | None, early: Any, reporter: Reporter,
           label: Path | None = None, patches: bool = True, follower: Any = None, debs: Any = None) -> BuiltBundle:
    """Build *output* and record it (as *label*: the chunk folder when the file is temporary)."""
    from tvdeploy.audit.recorder import record_global, signing_key
    from tvdeploy.bundle.writer import build_from_engine

    def unlock() -> None:  # the audit record needs the operator key: unlock it while the engine stages
        signing_key()

    built = build_from_engine(output, spec, engine, reporter=reporter, while_staging=unlock, early=early,
                              since=since, patches=patches, follower=follower, debs=debs)
    objects = [{"type": "bundle", "name": str((label or output).resolve()),
                "digest": f"sha256:{built.manifest_sha256}"}]
    if since is not None:
        objects.append({"type": "inventory", "name": str(since.about.get("site", "")),
                        "digest": f"sha256:{since.about.get('inventory_sha256', '')}",
                        "expected_on_site": str(len(built.expected or {})),
                        "patched_layers": str(len(built.patches or {}))})
    objects += [{"type": "image", "name": svc, "digest": img["digest"]}
                for svc, img in built.release["images"].items()]
    objects += [{"type": "engine-package", "name": p["name"], "version": p["version"], "digest": p["digest"]}
                for p in (built.engine_packages or {}).get("packages", [])]
    record_global("bundle.build", objects=objects)
    return built


def sign_built(bundle: Path, signers: list[Signer]) -> None:
    from tvdeploy.audit.recorder import record_global
    from tvdeploy.bundle.sign import sign_bundle
    from tvdeploy.keys.store import key_names

    for private_key, kid in signers:
        signed = sign_bundle(bundle, private_key, kid)
        record_global("bundle.sign", objects=[
            {"type": "bundle", "name": str(bundle.resolve()), "digest": f"sha256:{signed.manifest_sha256}"},
            {"type": "key", "name": key_names().get(kid, kid[:16]), "key_id": kid},
        ])


def split_and_record(bundle: Path, chunk_size: int, output: Path, keys: list[str], signers: list[Signer],
                     reporter: Reporter, *, bundle_name: str) -> SplitResult:
    """Split *bundle* into the chunk folder *output* with an index signed by *signers* (the keys
    named *keys*), and record it."""
    from tvdeploy.audit.recorder import record_global
    from tvdeploy.bundle.chunksplit import split_bundle

    result = split_bundle(bundle, chunk_size, output, signers, reporter=reporter)
    record_global("bundle.split", objects=[
        {"type": "bundle", "name": bundle_name, "digest": f"sha256:{result.index.sha256}"},
        {"type": "chunk-index", "name": str((output / "chunks.json").resolve()),
         "digest": f"sha256:{result.index_sha256}", "chunks": str(len(result.index.chunks))},
        *({"type": "key", "name": n, "key_id": k} for n, (_p, k) in zip(dict.fromkeys(keys), signers, strict=True)),
    ])
    return result


def _build_split(output: Path, spec: ReleaseSpec, engine: str, since: Since | None, early: Any, chunk_size: int,
                 keys: list[str], signers: list[Signer], reporter: Reporter,
                 opts: BuildOptions | None = None) -> Built:
    """Build and sign into a temporary folder beside the chunk folder *output*, split, then drop
    the bundle file: the chunk folder is the result (``bundle join`` gives the file back)."""
    import shutil
    import tempfile

    from tvdeploy.errors import InputFileError

    if not output.parent.is_dir():
        raise InputFileError(f"{output.parent}: folder does not exist")
    work = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.build-"))
    try:
        opts = opts or BuildOptions()
        bundle = work / f"{output.name.removesuffix('.tar')}.tar"
        built = _build(bundle, spec, engine, since, early, reporter, label=output, patches=opts.patches,
                       debs=opts.debs)
        sign_built(bundle, signers)
        if opts.compress:
            packed = work / f"{bundle.name}.zst"
            _compress(bundle, packed, reporter)
            bundle.unlink()
            bundle = packed
        built = dataclasses.replace(built, size=bundle.stat().st_size)
        result = split_and_record(bundle, chunk_size, output, keys, signers, reporter, bundle_name=bundle.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Built(built, result, compressed=opts.compress)
