"""tvdeploy bundle split BUNDLE --size SIZE -o DIR --key NAME | join DIR -o BUNDLE | verify-chunks DIR

``bundle verify DIR`` is the same check as ``verify-chunks DIR`` (kept as an alias, with
``--chunks-only``): both call ``verify_chunk_folder``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.cli.output import reporter


def _check_size(value: str) -> str:
    """Checked while parsing, so a bad --size is a usage error whatever else is missing."""
    from tvdeploy.bundle.sizes import parse_size

    try:
        parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _key_names() -> dict[str, str]:
    from tvdeploy.keys.store import list_keys

    return {k.key_id: k.name for k in list_keys()}


def split(
    bundle: Path = typer.Argument(..., help="The bundle file.", show_default=False),
    size: str = typer.Option(..., "--size", metavar="SIZE", callback=_check_size,
                             help="Chunk size: 100MiB, 4GiB, 700MB, a byte count, or cd, dvd, dvd-dl, fat32.",
                             show_default=False),
    output: Path = typer.Option(..., "-o", "--output", metavar="DIR", help="Folder for the chunks (created).",
                                show_default=False),
    keys: list[str] = typer.Option(..., "--key", metavar="NAME",
                                   help="Key that signs the chunk index (repeat to meet the trust threshold).",
                                   show_default=False),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help="Where the keys' passphrase comes from."),
) -> None:
    """Split BUNDLE into numbered chunks of SIZE with a signed chunk index, for removable media."""
    from tvdeploy.audit.recorder import record_global, signing_key
    from tvdeploy.bundle.chunks import split_bundle
    from tvdeploy.bundle.sizes import format_size, parse_size
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.keys.store import key_id, load_private_key, passphrase_from_reference

    chunk_size = parse_size(size)
    secret = passphrase_from_reference(passphrase, "--passphrase")
    signers = []
    for name in dict.fromkeys(keys):
        private_key = load_private_key(name, secret)
        signers.append((private_key, key_id(private_key.public_key())))
    signing_key()  # the audit record needs the operator key: fail before writing anything
    result = split_bundle(bundle, chunk_size, output, signers, reporter=reporter())
    index = result.index
    record_global("bundle.split", objects=[
        {"type": "bundle", "name": str(bundle.resolve()), "digest": f"sha256:{index.sha256}"},
        {"type": "chunk-index", "name": str((output / "chunks.json").resolve()),
         "digest": f"sha256:{result.index_sha256}", "chunks": str(len(index.chunks))},
        *({"type": "key", "name": n, "key_id": k} for n, (_p, k) in zip(dict.fromkeys(keys), signers, strict=True)),
    ])
    if OPTIONS.json:
        emit_json({"bundle": str(bundle), "dir": str(output), "size": index.size, "sha256": index.sha256,
                   "chunk_size": index.chunk_size, "index_sha256": result.index_sha256,
                   "chunks": [{"name": c.name, "size": c.size, "sha256": c.sha256} for c in index.chunks],
                   "signers": list(result.signers)})
        return
    out(f"{output}: {len(index.chunks)} chunks of {format_size(index.chunk_size)} ({format_size(index.size)} in "
        f"all) and chunks.json signed by {len(result.signers)} key(s)")


def join(
    directory: Path = typer.Argument(..., metavar="DIR", help="The chunk folder.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", metavar="BUNDLE", help="Bundle file to write.",
                                show_default=False),
    trust_root: Path | None = typer.Option(None, "--trust", metavar="ROOT",
                                           help="Also check the chunk index's signatures against this trust root."),
) -> None:
    """Reassemble the chunks of DIR into one bundle file, checking each chunk on the way.
    The chunks are only read: never deleted or changed."""
    from tvdeploy.audit.recorder import record_global, signing_key
    from tvdeploy.bundle.chunks import join_chunks
    from tvdeploy.bundle.sizes import format_size
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn

    signing_key()
    result = join_chunks(directory, output, trust_path=trust_root, reporter=reporter())
    if trust_root is None:
        warn(f"{directory}: chunks checked against an index whose signatures were not checked (no --trust); "
             f"run 'tvdeploy bundle verify {output} --trust ROOT' before using the bundle")
    index = result.index
    record_global("bundle.join", objects=[
        {"type": "chunk-folder", "name": str(directory.resolve()), "chunks": str(len(index.chunks))},
        {"type": "bundle", "name": str(output.resolve()), "digest": f"sha256:{index.sha256}"},
    ])
    if OPTIONS.json:
        emit_json({"dir": str(directory), "bundle": str(output), "size": index.size, "sha256": index.sha256,
                   "chunks": len(index.chunks), "index_signers": list(result.signers)})
        return
    out(f"{output}: joined {len(index.chunks)} chunks ({format_size(index.size)}), sha256 {index.sha256}")


def _report_doc(report: Any, names: dict[str, str]) -> dict[str, Any]:
    return {
        "dir": str(report.dir), "bundle": report.index.bundle, "size": report.index.size,
        "sha256": report.index.sha256, "chunks": len(report.index.chunks), "chunks_ok": report.ok,
        "bad_chunks": [{"name": p.name, "problem": p.kind, "detail": p.detail} for p in report.problems],
        "extra_files": list(report.extra), "trust_root_version": report.root.version,
        "threshold": report.root.threshold,
        "index_signatures": [{"file": c.file, "key_id": c.key_id, "name": names.get(c.key_id), "status": c.status}
                             for c in report.checks],
    }


def verify_chunks(
    directory: Path = typer.Argument(..., metavar="DIR", help="The chunk folder.", show_default=False),
    trust_root: Path = typer.Option(..., "--trust", metavar="ROOT", help="Trust root file.", show_default=False),
    chunks_only: bool = typer.Option(False, "--chunks-only",
                                     help="Check the signed index and the chunks, not the bundle inside."),
) -> int:
    """Check a chunk folder: the index's signatures, then every chunk (naming exactly the missing,
    truncated or corrupt ones), then the bundle inside as `bundle verify` does (same as
    `bundle verify DIR`)."""
    return verify_chunk_folder(directory, trust_root, chunks_only=chunks_only)


def verify_chunk_folder(directory: Path, trust_root: Path, *, chunks_only: bool, bars_only: bool = False) -> int:
    """The chunk-folder verification of ``bundle verify DIR`` and ``bundle verify-chunks DIR``."""
    import sys
    from datetime import UTC, datetime

    from tvdeploy.bundle.chunkbundle import judge_bundle, read_chunked_bundle
    from tvdeploy.bundle.chunks import verify_chunk_dir
    from tvdeploy.bundle.sizes import format_size
    from tvdeploy.cli.commands.bundle import delta_doc, print_delta
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn

    rep = reporter(bars_only=bars_only)
    report = verify_chunk_dir(directory, trust_root, reporter=rep)
    names = _key_names()
    doc = _report_doc(report, names)
    if not report.ok:
        error = report.failure()
        if OPTIONS.json:
            # One document on stdout (the report), the error line on stderr, exit 1.
            emit_json({**doc, "verified": False, "error": error.message})
            print(f"error: {error.message}", file=sys.stderr)
            return 1
        raise error
    for c in report.checks:
        if c.status != "valid":
            warn(f"{directory / c.file}: key {c.key_id[:16]}: {c.status} (not counted)")
    for name in report.extra:
        warn(f"{directory / name}: not part of the chunk index (ignored)")
    verified = None
    if not chunks_only:
        bundle = read_chunked_bundle(directory, report.index, reporter=rep)
        verified = judge_bundle(bundle, report.root, datetime.now(UTC))
    if OPTIONS.json:
        if verified is not None:
            rel = verified.bundle.release
            doc["bundle_verified"] = {
                "release": rel["release"], "sequence": rel["sequence"],
                "manifest_sha256": verified.bundle.manifest_sha256,
                "signatures": [{"file": c.file, "key_id": c.key_id, "name": names.get(c.key_id), "status": c.status}
                               for c in verified.checks],
                **delta_doc(verified.bundle)}
        emit_json({**doc, "verified": True})
        return 0
    who = ", ".join(sorted(names.get(k, k[:16]) for k in report.signers))
    out(f"{directory}: {len(report.index.chunks)} chunks, {format_size(report.index.size)}: all present and intact; "
        f"index signed by {len(report.signers)} of {report.root.threshold} required keys ({who}); "
        f"trust root version {report.root.version}")
    if verified is not None:
        rel = verified.bundle.release
        bwho = ", ".join(sorted(names.get(k, k[:16]) for k in verified.signers))
        out(f"{directory}: bundle {report.index.bundle} verified: release {rel['release']} (sequence "
            f"{rel['sequence']}), {len(rel['images'])} images, {len(verified.bundle.blob_digests)} blobs; signed by "
            f"{len(verified.signers)} of {verified.root.threshold} required keys ({bwho})")
        print_delta(directory, verified.bundle)
    return 0


def register(app: typer.Typer) -> None:
    from tvdeploy.cli.commands.bundle import bundle_app

    # bundle_app lives as long as the process; the app may be built more than once (tests).
    have = {c.name for c in bundle_app.registered_commands}
    for name, func in (("split", split), ("join", join), ("verify-chunks", verify_chunks)):
        if name not in have:
            bundle_app.command(name)(func)
