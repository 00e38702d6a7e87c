"""tvdeploy bundle build SPEC --engine DOCKER_HOST -o BUNDLE | sign | verify | inspect"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

bundle_app = typer.Typer(help="Offline image bundles: build, sign, verify, inspect.", no_args_is_help=True)


def _reporter(bar_only: bool = False) -> Any:
    """Progress for the command. Under --json stdout carries the one result document, not
    progress events. Reading a bundle shows a bar on a terminal only: in a pipe its one line of
    result (or of error) is all there is to say."""
    import sys

    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import reporter
    from tvdeploy.reporting import NullReporter

    if OPTIONS.json or (bar_only and not sys.stderr.isatty()):
        return NullReporter()
    return reporter()


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _key_names() -> dict[str, str]:
    from tvdeploy.keys.store import list_keys

    return {k.key_id: k.name for k in list_keys()}


@bundle_app.command("build")
def build(
    spec: Path = typer.Argument(..., help="Release spec (YAML: release, sequence, images).", show_default=False),
    engine: str = typer.Option(..., "--engine", metavar="DOCKER_HOST",
                               help="The build engine: unix:///path/docker.sock or tcp://HOST:PORT.",
                               show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle file to write.", show_default=False),
) -> None:
    """Stream the spec's images out of the build engine into one bundle tar (OCI layout, release
    manifest, inventory, file manifest, empty signatures/)."""
    from tvdeploy.bundle.engine import start_early

    # The engine stages all images before it sends a byte: ask first, import and check meanwhile.
    early = start_early(engine, spec)
    try:
        from tvdeploy.audit.recorder import record_global, signing_key
        from tvdeploy.bundle.writer import build_from_engine
        from tvdeploy.cli.options import OPTIONS
        from tvdeploy.cli.output import emit_json, out
        from tvdeploy.release.spec import load_release_spec

        release_spec = load_release_spec(spec)
        # The audit record needs the operator key: unlock it before the long part.
        built = build_from_engine(output, release_spec, engine, reporter=_reporter(), while_staging=signing_key,
                                  early=early)
    finally:
        if early is not None:
            early.close()
    objects = [{"type": "bundle", "name": str(output.resolve()), "digest": f"sha256:{built.manifest_sha256}"}]
    objects += [{"type": "image", "name": svc, "digest": img["digest"]}
                for svc, img in built.release["images"].items()]
    record_global("bundle.build", objects=objects)
    if OPTIONS.json:
        emit_json({"bundle": str(output), "size": built.size, "blobs": built.blobs,
                   "manifest_sha256": built.manifest_sha256, "release": built.release})
        return
    rel = built.release
    out(f"{output}: release {rel['release']} (sequence {rel['sequence']}), {len(rel['images'])} images, "
        f"{built.blobs} blobs, {_human_size(built.size)}")


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
    from tvdeploy.keys.store import key_id, load_private_key, passphrase_from_reference

    private_key = load_private_key(key, passphrase_from_reference(passphrase, "--passphrase"))
    kid = key_id(private_key.public_key())
    signing_key()
    signed = sign_bundle(bundle, private_key, kid, reporter=_reporter(bar_only=True))
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
    bundle: Path = typer.Argument(..., help="The bundle file.", show_default=False),
    trust_root: Path = typer.Option(..., "--trust", metavar="ROOT", help="Trust root file.", show_default=False),
) -> None:
    """Re-hash every file and blob of BUNDLE and check that enough distinct trusted keys signed it."""
    from tvdeploy.bundle.verify import VALID, verify_bundle
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, warn

    result = verify_bundle(bundle, trust_root, reporter=_reporter(bar_only=True))
    names = _key_names()
    rel = result.bundle.release
    if OPTIONS.json:
        emit_json({
            "bundle": str(bundle), "verified": True, "release": rel["release"], "sequence": rel["sequence"],
            "manifest_sha256": result.bundle.manifest_sha256, "trust_root_version": result.root.version,
            "threshold": result.root.threshold,
            "signatures": [{"file": c.file, "key_id": c.key_id, "name": names.get(c.key_id),
                            "status": c.status} for c in result.checks],
        })
        return
    for c in result.checks:
        if c.status != VALID:
            warn(f"{c.file}: key {c.key_id[:16]}: {c.status} (not counted)")
    who = ", ".join(sorted(names.get(k, k[:16]) for k in result.signers))
    out(f"{bundle}: verified: release {rel['release']} (sequence {rel['sequence']}), "
        f"{len(rel['images'])} images, {len(result.bundle.blob_digests)} blobs; signed by "
        f"{len(result.signers)} distinct trusted keys ({who}), {result.root.threshold} required; "
        f"trust root version {result.root.version}")


@bundle_app.command("inspect")
def inspect(bundle: Path = typer.Argument(..., help="The bundle file.", show_default=False)) -> None:
    """Show release, images, digests, sizes and signatures of BUNDLE (checked, not trust-verified)."""
    from tvdeploy.bundle.inspect import inspect_bundle
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table

    doc = inspect_bundle(bundle, reporter=_reporter(bar_only=True))
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"{bundle}: release {doc['release']} (sequence {doc['sequence']}), {len(doc['images'])} images, "
        f"{doc['blobs']} blobs, {_human_size(doc['size'])}")
    table(None, ["service", "reference", "digest", "size", "layers"],
          [[svc, i["reference"], i["digest"], _human_size(i["size"] or 0), i["layers"]]
           for svc, i in doc["images"].items()])
    names = _key_names()
    if not doc["signatures"]:
        out("signatures: none")
    for s in doc["signatures"]:
        out(f"signature {s['file']}: key {s['key_id']}" + (f" ({names[s['key_id']]})" if s["key_id"] in names
                                                          else "") + " (unverified; use bundle verify)")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
