"""The in-toto style statement a bundle signature covers.

Subjects are ``manifest.json`` (which lists every file with its sha256) and every blob digest;
the predicate names the release and its sequence, so a signature cannot be moved to another
release. Signature files are not subjects: signing never changes what the next signer signs.
A delta's predicate also lists the layers it expects on the site (digest and size): they are in
manifest.json too, but naming them in the statement says outright what a signer vouched the
delta builds on, so it cannot be pointed at other base blobs. Likewise a delta's patches: for each
layer shipped as a byte-level patch, the base layer it applies to, the patch blob, and the
rebuilt layer's digest and size (absent when there are none: older statements are unchanged).
A bundle carrying Docker Engine packages names them (name, version, architecture, digest, size)
under ``engine_packages``, exactly as its manifest.json lists them.
"""

from __future__ import annotations

from typing import Any

from tvdeploy.audit.canonical import canonical_json
from tvdeploy.bundle.layout import BLOB_PREFIX, FORMAT

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://trueverit.io/tvdeploy/bundle/v1"


def statement(manifest_sha256: str, blob_digests: list[str], release: str, sequence: int,
              expected: dict[str, int] | None = None, patches: list[dict[str, Any]] | None = None,
              engine_packages: dict[str, Any] | None = None) -> dict[str, Any]:
    """*expected* (a delta's layers expected on site, hex -> size); None for a full bundle.
    *patches* (a delta's patched layers: ``patch_entries``); none: the predicate has no key.
    *engine_packages*: the manifest's section (tvdeploy.bundle.engine_packages), or no key."""
    subjects = [{"name": "manifest.json", "digest": {"sha256": manifest_sha256}}]
    subjects += [{"name": BLOB_PREFIX + d, "digest": {"sha256": d}} for d in sorted(blob_digests)]
    predicate: dict[str, Any] = {"format": FORMAT, "release": release, "sequence": sequence}
    if expected is not None:
        predicate["expected_on_site"] = [{"digest": f"sha256:{h}", "size": n} for h, n in sorted(expected.items())]
    if patches:
        predicate["patches"] = patches
    if engine_packages:
        predicate["engine_packages"] = engine_packages
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def for_bundle(bundle: Any) -> dict[str, Any]:
    """The statement of a bundle read by tvdeploy.bundle.reader (what a signature must cover)."""
    rel = bundle.release
    patches = patch_entries({h: (p.base, p.patch, p.size) for h, p in bundle.patches.items()})
    from tvdeploy.bundle.engine_packages import statement_section

    return statement(bundle.manifest_sha256, bundle.blob_digests, rel["release"], rel["sequence"],
                     bundle.expected if bundle.is_delta else None, patches, statement_section(bundle))


def patch_entries(patches: dict[str, tuple[str, str, int]]) -> list[dict[str, Any]]:
    """A delta's patched layers as manifest.json and the statement list them: for each rebuilt
    layer (hex -> (base hex, patch hex, size)) the base, the patch and the result's digest and
    size, sorted by result digest."""
    return [{"digest": f"sha256:{h}", "size": size, "base": f"sha256:{base}", "patch": f"sha256:{patch}"}
            for h, (base, patch, size) in sorted(patches.items())]


def encode(doc: dict[str, Any]) -> bytes:
    return canonical_json(doc)
