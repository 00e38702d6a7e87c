"""tvdeploy bundle build SPEC --engine DOCKER_HOST -o BUNDLE [--since HAVE.json] [--chunk-size SIZE --key NAME]
[--compress] | sign | verify | inspect: each accepts a bundle file, compressed or not, or a chunk folder
(sign refuses a folder and a compressed bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tvdeploy.bundle.sizes import format_size
from tvdeploy.cli.bundle_views import check_size, delta_doc, delta_text, print_delta, verify_chunk_folder
from tvdeploy.cli.output import reporter

bundle_app = typer.Typer(
    help="Offline image bundles: build, sign, verify, inspect, split, join, inventory, import.",
    no_args_is_help=True,
)


@bundle_app.command("build")
def build(
    spec: Path = typer.Argument(..., help="Release spec (YAML: release, sequence, images).", show_default=False),
    engine: str = typer.Option(..., "--engine", metavar="DOCKER_HOST",
                               help="The build engine: unix:///path/docker.sock, or tcp://HOST:PORT with TLS "
                                    "(DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH).",
                               show_default=False),
    output: Path = typer.Option(..., "-o", "--output",
                                help="Bundle file to write (with --chunk-size: the chunk folder).",
                                show_default=False),
    since_file: Path | None = typer.Option(None, "--since", metavar="HAVE.json",
                                           help="Build a delta: leave out the layers this signed site inventory "
                                                "lists (bundle inventory SITE -o HAVE.json)."),
    inventory_keys: list[str] = typer.Option([], "--inventory-key", metavar="FILE",
                                             help="Public key that may have signed the inventory (repeatable; "
                                                  "default: the local operator key)."),
    chunk_size: str | None = typer.Option(None, "--chunk-size", metavar="SIZE", callback=check_size,
                                          help="Split the signed bundle into chunks of SIZE (100MiB, 4GiB, dvd) "
                                               "in the folder -o; needs --key."),
    keys: list[str] = typer.Option([], "--key", metavar="NAME",
                                   help="Sign the bundle (and the chunk index) with this key (repeatable)."),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help="Where the keys' passphrase comes from."),
    compress: bool = typer.Option(False, "--compress",
                                  help="Write the (signed) bundle zstd-compressed, using every core; every "
                                       "bundle command reads it as it is."),
    no_patches: bool = typer.Option(False, "--no-patches",
                                    help="With --since: ship changed layers whole, not as byte-level patches "
                                         "against the site's previous layers."),
    engine_packages: str | None = typer.Option(None, "--engine-packages", metavar="PLATFORM",
                                               help="Also carry Docker Engine's packages for PLATFORM (debian-12: "
                                                    "docker.io and what a minimal Debian 12 lacks)."),
) -> None:
    """Stream the spec's images out of the build engine into one bundle tar (OCI layout, release
    manifest, inventory, file manifest, empty signatures/); optionally a delta (with byte-level
    patches), signed, compressed, split."""
    from tvdeploy.bundle.sizes import parse_size
    from tvdeploy.execute.bundle_build import build_bundle

    if chunk_size is not None and not keys:
        raise typer.BadParameter("--chunk-size needs --key NAME: sign the bundle before it is split",
                                 param_hint="--chunk-size")
    result = build_bundle(output, spec, engine, reporter(), since_file=since_file,
                          inventory_keys=[Path(k) for k in inventory_keys], keys=keys, passphrase=passphrase,
                          chunk_size=None if chunk_size is None else parse_size(chunk_size),
                          patches=not no_patches, compress=compress, engine_packages=engine_packages)
    _report_build(output, result)


def _report_build(output: Path, result: Any) -> None:
    from tvdeploy.bundle.statement import patch_entries
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out

    built, split = result.bundle, result.split
    if OPTIONS.json:
        doc: dict[str, Any] = {"bundle": str(output), "size": built.size, "blobs": built.blobs,
                               "manifest_sha256": built.manifest_sha256, "release": built.release,
                               "delta": built.is_delta, "compressed": result.compressed,
                               "engine_packages": built.engine_packages}
        if built.is_delta:
            doc["expected_on_site"] = [{"digest": f"sha256:{h}", "size": n} for h, n in sorted(built.expected.items())]
            doc["patches"] = patch_entries(built.patches or {})
        if split is not None:
            doc["chunks"] = [{"name": c.name, "size": c.size, "sha256": c.sha256} for c in split.index.chunks]
            doc["index_sha256"] = split.index_sha256
        emit_json(doc)
        return
    rel = built.release
    what = f"{output}: release {rel['release']} (sequence {rel['sequence']}), {len(rel['images'])} images, " \
           f"{built.blobs} blobs, {format_size(built.size)}"
    if split is not None:
        what += f", in {len(split.index.chunks)} chunks of {format_size(split.index.chunk_size)}"
    out(what)
    if built.is_delta:
        out(f"{output}: {delta_text(built.blobs, built.expected)}")
        if built.patches:
            rebuilt = sum(size for _b, _p, size in built.patches.values())
            out(f"{output}: {len(built.patches)} layer(s) shipped as byte-level patches ({format_size(rebuilt)} "
                "rebuilt on the site from its previous layers)")
    if built.engine_packages:
        pkgs = built.engine_packages["packages"]
        out(f"{output}: {len(pkgs)} engine packages for {built.engine_packages['platform']} "
            f"({format_size(sum(p['size'] for p in pkgs))})")
    if result.compressed:
        out(f"{output}: zstd-compressed ({format_size(built.size)})")


@bundle_app.command("sign")
def sign(
    bundle: Path = typer.Argument(..., help="The bundle file.", show_default=False),
    key: str = typer.Option(..., "--key", help="Signing key name in the key store.", show_default=False),
    passphrase: str | None = typer.Option(None, "--passphrase", metavar="env:VAR|file:PATH",
                                          help="Where the key's passphrase comes from."),
) -> None:
    """Check BUNDLE in full, then append a DSSE signature by KEY (blobs are not rewritten)."""
    from tvdeploy.audit.recorder import record_global, signing_key
    from tvdeploy.bundle.sign import sign_bundle
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import RefusedError
    from tvdeploy.keys.store import key_id, load_private_key, passphrase_from_reference

    if bundle.is_dir():
        # A signature is appended to the bundle tar: chunks are hashed in a signed index, so
        # appending to the last chunk would invalidate it. Signing happens before splitting.
        raise RefusedError(f"{bundle}: is a chunk folder; a chunked bundle cannot be signed: sign the bundle file "
                           f"before splitting it (bundle join {bundle} -o BUNDLE, sign, split again)")
    from tvdeploy.bundle.compress import file_is_compressed

    if file_is_compressed(bundle):
        raise RefusedError(f"{bundle}: is a compressed bundle; a signature is appended to the plain tar: sign the "
                           "bundle before compressing it (bundle build --key NAME --compress)")
    private_key = load_private_key(key, passphrase_from_reference(passphrase, "--passphrase"))
    kid = key_id(private_key.public_key())
    signing_key()
    signed = sign_bundle(bundle, private_key, kid, reporter=reporter(bars_only=True))
    record_global("bundle.sign", objects=[
        {"type": "bundle", "name": str(bundle.resolve()), "digest": f"sha256:{signed.manifest_sha256}"},
        {"type": "key", "name": key, "key_id": kid},
    ])
    if OPTIONS.json:
        emit_json({"bundle": str(bundle), "key": key, "key_id": kid, "signature": signed.member})
        return
    out(f"{bundle}: signed by {key} (key id {kid[:16]}) as {signed.member}")


@bundle_app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="The bundle file or chunk folder.", show_default=False),
    trust_root: Path = typer.Option(..., "--trust", metavar="ROOT", help="Trust root file.", show_default=False),
) -> int:
    """Re-hash every file and blob of BUNDLE and check that enough distinct trusted keys signed it.
    A chunk folder: the signed index and every chunk first (naming the bad ones), then the bundle."""
    from tvdeploy.bundle.verify import VALID, verify_bundle
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn
    from tvdeploy.keys.store import key_names

    if bundle.is_dir():
        return verify_chunk_folder(bundle, trust_root, chunks_only=False, bars_only=True)
    result = verify_bundle(bundle, trust_root, reporter=reporter(bars_only=True))
    names = key_names()
    rel = result.bundle.release
    if OPTIONS.json:
        emit_json({
            "bundle": str(bundle), "verified": True, "release": rel["release"], "sequence": rel["sequence"],
            "manifest_sha256": result.bundle.manifest_sha256, "trust_root_version": result.root.version,
            "threshold": result.root.threshold,
            "signatures": [{"file": c.file, "key_id": c.key_id, "name": names.get(c.key_id),
                            "status": c.status} for c in result.checks],
            **delta_doc(result.bundle),
        })
        return 0
    for c in result.checks:
        if c.status != VALID:
            warn(f"{c.file}: key {c.key_id[:16]}: {c.status} (not counted)")
    who = ", ".join(sorted(names.get(k, k[:16]) for k in result.signers))
    out(f"{bundle}: verified: release {rel['release']} (sequence {rel['sequence']}), "
        f"{len(rel['images'])} images, {len(result.bundle.blob_digests)} blobs; signed by "
        f"{len(result.signers)} distinct trusted keys ({who}), {result.root.threshold} required; "
        f"trust root version {result.root.version}")
    print_delta(bundle, result.bundle)
    return 0


@bundle_app.command("inspect")
def inspect(bundle: Path = typer.Argument(..., help="The bundle file or chunk folder.", show_default=False)) -> None:
    """Show release, images, digests, sizes (shipped and, for a delta, expected on site) and
    signatures of BUNDLE (checked, not trust-verified)."""
    from tvdeploy.bundle.inspect import inspect_bundle
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.keys.store import key_names

    doc = inspect_bundle(bundle, reporter=reporter(bars_only=True))
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"{bundle}: release {doc['release']} (sequence {doc['sequence']}), {len(doc['images'])} images, "
        f"{doc['blobs']} blobs, {format_size(doc['size'])}")
    if doc["delta"]:
        base = doc["since"] or {}
        built_on = f" (built against the inventory of site {base['site']})" if base.get("site") else ""
        out(f"delta: {format_size(doc['shipped']['bytes'])} shipped in {doc['shipped']['blobs']} blobs, "
            f"{format_size(doc['expected_on_site']['bytes'])} expected on site in "
            f"{doc['expected_on_site']['blobs']} blobs{built_on}")
        if doc["patched"]["layers"]:
            out(f"patches: {doc['patched']['layers']} layer(s), {format_size(doc['patched']['bytes'])} rebuilt on "
                "the site from its previous layers")
    if doc["compressed"]:
        out("compressed: zstd (sizes are those of the plain bundle)")
    table(None, ["service", "reference", "digest", "size", "layers", "shipped", "patched", "on site"],
          [[svc, i["reference"], i["digest"], format_size(i["size"] or 0), i["layers"],
            format_size(i["shipped_bytes"]), format_size(i["patched_bytes"]), format_size(i["expected_bytes"])]
           for svc, i in doc["images"].items()])
    names = key_names()
    if not doc["signatures"]:
        out("signatures: none")
    for s in doc["signatures"]:
        out(f"signature {s['file']}: key {s['key_id']}" + (f" ({names[s['key_id']]})" if s["key_id"] in names
                                                          else "") + " (unverified; use bundle verify)")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
