"""Image and bundle facts for the policy checks, read offline from the bundle itself.

The bundle is read once by the strict reader (tvdeploy.bundle.reader), every blob staged in a
temporary folder through its sink (so chunked and compressed bundles work alike); then each
image's manifest, config and layers are read from there: the user, the healthcheck, the ENV
names, the build history, and per layer (tar, gzip'd or not) the setuid/setgid files, private
keys and credential files, and SSH servers. The temporary folder is removed at the end.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from tvdeploy.policy.model import BundleFacts, ImageFacts

log = logging.getLogger(__name__)

MAX_SCAN = 1024 * 1024  # bytes of a file searched for a private key header
MAX_MEMBERS = 200_000
KEY_HEADER = re.compile(rb"-----BEGIN ((RSA|DSA|EC|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----")
CREDENTIAL_NAMES = {
    "id_rsa": "SSH private key", "id_dsa": "SSH private key", "id_ecdsa": "SSH private key",
    "id_ed25519": "SSH private key", ".netrc": "netrc credentials", ".pgpass": "PostgreSQL password file",
    ".git-credentials": "git credentials", ".htpasswd": "password file",
}
CREDENTIAL_PATHS = {".aws/credentials": "AWS credentials", ".docker/config.json": "registry credentials",
                    ".kube/config": "Kubernetes credentials"}
SSHD = ("usr/sbin/sshd", "usr/sbin/dropbear", "sbin/sshd")


@dataclass
class LayerScan:
    setuid: list[str] = field(default_factory=list)
    secrets: list[tuple[str, str]] = field(default_factory=list)
    sshd: list[str] = field(default_factory=list)


def scan_layer(fh: BinaryIO) -> LayerScan:
    """One layer (tar, gzip'd or plain), streamed: nothing is extracted."""
    scan = LayerScan()
    with tarfile.open(fileobj=fh, mode="r|*") as tar:
        for n, member in enumerate(tar):
            if n > MAX_MEMBERS:
                raise ValueError(f"more than {MAX_MEMBERS} entries in a layer")
            name = member.name.lstrip("./")
            if member.isfile() and member.mode & 0o6000:
                bits = "setuid" if member.mode & 0o4000 else "setgid"
                scan.setuid.append(f"/{name} ({bits}, mode {member.mode & 0o7777:04o})")
            if name in SSHD and (member.isfile() or member.issym() or member.islnk()):
                scan.sshd.append(f"/{name}")
            if not member.isfile():
                continue
            base = name.rsplit("/", 1)[-1]
            why = CREDENTIAL_NAMES.get(base) or next((w for p, w in CREDENTIAL_PATHS.items() if name.endswith(p)), None)
            if why is None and 0 < member.size <= MAX_SCAN:
                data = tar.extractfile(member)
                if data is not None and KEY_HEADER.search(data.read(MAX_SCAN)):
                    why = "PEM private key"
            if why:
                scan.secrets.append((f"/{name}", why))
    return scan


class _Staging:
    """BlobSink: every blob to a file named by its digest, kept only when it verified."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fh: BinaryIO | None = None
        self.hex = ""

    def begin(self, hexdigest: str, size: int) -> None:
        self.hex = hexdigest
        self.fh = open(self.folder / f"{hexdigest}.part", "wb")  # noqa: SIM115 - closed in commit/discard

    def write(self, chunk: bytes | memoryview) -> None:
        assert self.fh is not None
        self.fh.write(chunk)

    def commit(self) -> None:
        assert self.fh is not None
        self.fh.close()
        (self.folder / f"{self.hex}.part").rename(self.folder / self.hex)

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        (self.folder / f"{self.hex}.part").unlink(missing_ok=True)


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1]


def image_facts(service: str, ref: dict[str, Any], blobs: Path, cache: dict[str, LayerScan],
                patched: frozenset[str] = frozenset()) -> ImageFacts:
    """A delta leaves out the layers the site holds (they passed this gate when their own bundle
    was imported) and may ship others as patches (their bytes, fixed by the signed digest, exist
    only once rebuilt at import): neither is scanned here, and neither counts as unreadable."""
    manifest = json.loads((blobs / _hex(ref["digest"])).read_bytes())
    config = json.loads((blobs / _hex(manifest["config"]["digest"])).read_bytes())
    cfg = config.get("config") or {}
    scan, unreadable = LayerScan(), []
    for layer in manifest["layers"]:
        h = _hex(layer["digest"])
        if h not in cache:
            path = blobs / h
            if not path.exists():
                if h not in patched:
                    log.debug("%s: layer %s not in this bundle (delta): the site holds it", service, h[:12])
                continue
            try:
                with path.open("rb") as fh:
                    cache[h] = scan_layer(fh)
            except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
                unreadable.append(f"layer {h[:12]}: {exc}")
                continue
        scan.setuid += cache[h].setuid
        scan.secrets += cache[h].secrets
        scan.sshd += cache[h].sshd
    hc = (cfg.get("Healthcheck") or {}).get("Test")
    return ImageFacts(
        service=service, reference=str(ref.get("reference", "")), digest=str(ref["digest"]),
        user=str(cfg.get("User") or ""), healthcheck=tuple(hc) if hc else None,
        env_names=tuple(str(e).split("=", 1)[0] for e in cfg.get("Env") or []),
        history=tuple(str(h.get("created_by", "")) for h in config.get("history") or []),
        setuid_files=tuple(dict.fromkeys(scan.setuid)), secret_files=tuple(dict.fromkeys(scan.secrets)),
        sshd_files=tuple(dict.fromkeys(scan.sshd)),
        size=sum(int(lay.get("size", 0)) for lay in manifest["layers"]) + int(manifest["config"].get("size", 0)),
        unreadable="; ".join(unreadable),
    )


def _signatures(bundle: Any, trust_root: Path | None, now: datetime) -> BundleFacts:
    from tvdeploy.bundle import statement, trust
    from tvdeploy.bundle.verify import VALID, judge
    from tvdeploy.errors import TvdeployError

    if trust_root is None:
        return BundleFacts(str(bundle.path), (), 0, (), "no trust root given: signatures not verified", "", None, None)
    try:
        _chain, root = trust.load_verified(trust_root, now)
    except TvdeployError as exc:
        return BundleFacts(str(bundle.path), (), 0, (), f"trust root: {exc.message}", str(trust_root), None, None)
    expected = statement.for_bundle(bundle)
    counted: set[str] = set()
    checks = [judge(file, sig, env, expected, root, counted, now)
              for file, env in sorted(bundle.signatures.items()) for sig in env.signatures]
    problems = tuple(f"{c.file}: key {c.key_id[:16]}: {c.status}" for c in checks if c.status != VALID)
    error = "" if len(counted) >= root.threshold else \
        f"signed by {len(counted)} of the {root.threshold} distinct trusted keys required"
    days = int((root.expires - now).total_seconds() // 86400)
    return BundleFacts(str(bundle.path), tuple(sorted(counted)), root.threshold, problems, error, str(trust_root),
                       trust.format_time(root.expires), days)


def gather(bundle_path: Path, trust_root: Path | None, now: datetime,
           reporter: Any = None, fileobj: Any = None) -> tuple[BundleFacts, tuple[ImageFacts, ...]]:
    """Read *bundle_path* once (strictly) and return its bundle and image facts; *fileobj*: the
    bundle's bytes from elsewhere (the chunks of a chunk folder, in order)."""
    from tvdeploy.bundle.reader import read_bundle

    with tempfile.TemporaryDirectory(prefix="tvdeploy-policy-") as tmp:
        blobs = Path(tmp)
        bundle = read_bundle(bundle_path, reporter=reporter, sink=_Staging(blobs), fileobj=fileobj)
        cache: dict[str, LayerScan] = {}
        patched = frozenset(getattr(bundle, "patches", {}) or {})
        images = tuple(image_facts(svc, ref, blobs, cache, patched)
                       for svc, ref in sorted(bundle.release["images"].items()))
        return _signatures(bundle, trust_root, now), images
