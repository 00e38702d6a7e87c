"""tvdeploy bundle split BUNDLE --size SIZE -o DIR --key NAME | join DIR -o BUNDLE | verify-chunks DIR

``bundle verify DIR`` is the same check as ``verify-chunks DIR`` (kept as an alias, with
``--chunks-only``): both call ``tvdeploy.cli.bundle_views.verify_chunk_folder``."""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.bundle_views import check_size, verify_chunk_folder
from tvdeploy.cli.commands.bundle import bundle_app
from tvdeploy.cli.output import reporter


def split(
    bundle: Path = typer.Argument(..., help="The bundle file.", show_default=False),
    size: str = typer.Option(..., "--size", metavar="SIZE", callback=check_size,
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
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.bundle.sizes import format_size, parse_size
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.execute.bundle_build import split_and_record
    from tvdeploy.keys.store import load_signers

    signers = load_signers(keys, passphrase)
    signing_key()  # the audit record needs the operator key: fail before writing anything
    result = split_and_record(bundle, parse_size(size), output, keys, signers, reporter(),
                              bundle_name=str(bundle.resolve()))
    index = result.index
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
    from tvdeploy.bundle.chunkjoin import join_chunks
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


def register(app: typer.Typer) -> None:
    # bundle_app lives as long as the process; the app may be built more than once (tests).
    have = {c.name for c in bundle_app.registered_commands}
    for name, func in (("split", split), ("join", join), ("verify-chunks", verify_chunks)):
        if name not in have:
            bundle_app.command(name)(func)
