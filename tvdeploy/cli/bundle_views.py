"""What the ``bundle`` commands share: checking a size option, naming keys, showing a delta, and
the chunk-folder verification of ``bundle verify DIR`` and ``bundle verify-chunks DIR``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from tvdeploy.bundle.sizes import format_size
from tvdeploy.cli.options import OPTIONS
from tvdeploy.cli.output import emit_json, out, reporter, warn


def check_size(value: str | None) -> str | None:
    """A typer callback: a bad size is a usage error whatever else is missing."""
    from tvdeploy.bundle.sizes import parse_size

    if value is None:
        return None
    try:
        parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def delta_text(shipped: int, expected: dict[str, int]) -> str:
    return (f"delta: {shipped} blobs shipped, {len(expected)} expected on site "
            f"({format_size(sum(expected.values()))} left to the site)")


def delta_doc(bundle: Any) -> dict[str, Any]:
    """What --json says about a verified bundle being a delta."""
    if not bundle.is_delta:
        return {"delta": False}
    from tvdeploy.bundle.statement import patch_entries

    return {"delta": True, "since": bundle.since, "shipped_blobs": len(bundle.blob_digests),
            "expected_on_site": [{"digest": f"sha256:{h}", "size": n} for h, n in sorted(bundle.expected.items())],
            "patches": patch_entries({h: (p.base, p.patch, p.size) for h, p in bundle.patches.items()})}


def print_delta(where: Path, bundle: Any) -> None:
    """The delta line of verify (and, with -v, every layer the site must hold)."""
    if not bundle.is_delta:
        return
    out(f"{where}: {delta_text(len(bundle.blob_digests), bundle.expected)}")
    if bundle.patches:
        out(f"{where}: {len(bundle.patches)} layer(s) shipped as byte-level patches against "
            f"{len(bundle.patch_bases)} base layer(s) the site must hold")
    if OPTIONS.verbose:
        for h, n in sorted(bundle.expected.items()):
            out(f"  expected on site: sha256:{h} ({n} bytes)")
        for h, p in sorted(bundle.patches.items()):
            out(f"  patched: sha256:{h} ({p.size} bytes) = patch sha256:{p.patch} on base sha256:{p.base}")


def _signatures(checks: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    return [{"file": c.file, "key_id": c.key_id, "name": names.get(c.key_id), "status": c.status} for c in checks]


def _report_doc(report: Any, names: dict[str, str]) -> dict[str, Any]:
    return {
        "dir": str(report.dir), "bundle": report.index.bundle, "size": report.index.size,
        "sha256": report.index.sha256, "chunks": len(report.index.chunks), "chunks_ok": report.ok,
        "bad_chunks": [{"name": p.name, "problem": p.kind, "detail": p.detail} for p in report.problems],
        "extra_files": list(report.extra), "trust_root_version": report.root.version,
        "threshold": report.root.threshold, "index_signatures": _signatures(report.checks, names),
    }


def verify_chunk_folder(directory: Path, trust_root: Path, *, chunks_only: bool, bars_only: bool = False) -> int:
    """The chunk-folder verification of ``bundle verify DIR`` and ``bundle verify-chunks DIR``."""
    from tvdeploy.bundle.chunkbundle import judge_bundle, read_chunked_bundle
    from tvdeploy.bundle.chunkverify import verify_chunk_dir
    from tvdeploy.keys.store import key_names

    rep = reporter(bars_only=bars_only)
    report = verify_chunk_dir(directory, trust_root, reporter=rep)
    names = key_names()
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
                "signatures": _signatures(verified.checks, names), **delta_doc(verified.bundle)}
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
