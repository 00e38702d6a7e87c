"""Docker Engine packages in a bundle (``bundle build --engine-packages debian-12``).

The ``.deb`` files of the engine and of every dependency a minimal Debian 12 lacks travel as
ordinary blobs (``blobs/sha256/<hex>``, each once). ``manifest.json`` and the signed statement's
predicate carry the same section, so signers vouch for exactly these packages:

    "engine_packages": {"platform": "debian-12-amd64", "engine": "docker.io",
                        "packages": [{"name", "version", "architecture", "digest": "sha256:<hex>",
                                      "size"}, ...]}       # sorted by name, each name once

Absent when the bundle carries none (older bundles and statements are unchanged). The reader
(``check_section``) refuses: unknown or missing keys; a platform this tvdeploy does not know; a
name, version or architecture outside Debian's syntax (so no name can make a path: ``/``, ``..``
and spaces are impossible); a name listed twice; the engine package missing from the list; a
size outside 1..512 MiB or different from the blob's; a blob not in the bundle. The blob digest
is checked by the reader like every blob. On a node a package is written as
``filename(pkg)`` in a folder of tvdeploy's (``version``'s epoch colon escaped as dpkg does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tvdeploy.bundle.layout import BLOB_PREFIX

KEY = "engine_packages"
MAX_PACKAGES = 64
MAX_PACKAGE_SIZE = 512 * 1024 * 1024
NAME = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}")  # Debian policy 5.6.1
VERSION = re.compile(r"(?:[0-9]{1,9}:)?[0-9][A-Za-z0-9.+~-]{0,99}")  # 5.6.12, epoch optional
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
ARCHES = ("amd64", "all")
FIELDS = {"name", "version", "architecture", "digest", "size"}


@dataclass(frozen=True)
class Platform:
    key: str  # what --engine-packages takes
    name: str  # what the bundle records
    suite: str
    architecture: str
    engine: str  # the engine's package; the others are its dependencies
    version_id: str  # /etc/os-release VERSION_ID of a build machine that can resolve it


PLATFORMS = {"debian-12": Platform("debian-12", "debian-12-amd64", "bookworm", "amd64", "docker.io", "12")}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    digest: str  # hex
    size: int

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "architecture": self.architecture,
                "digest": f"sha256:{self.digest}", "size": self.size}


@dataclass(frozen=True)
class EnginePackages:
    platform: str
    engine: str
    packages: tuple[Package, ...]

    @property
    def engine_version(self) -> str:
        return next(p.version for p in self.packages if p.name == self.engine)

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "engine": self.engine,
                "packages": [p.to_json() for p in sorted(self.packages, key=lambda p: p.name)]}


def platform(key: str) -> Platform:
    try:
        return PLATFORMS[key]
    except KeyError:
        raise ValueError(f"unknown engine platform {key!r} (known: {', '.join(sorted(PLATFORMS))})") from None


def platform_named(name: str) -> Platform | None:
    return next((p for p in PLATFORMS.values() if p.name == name), None)


def parse_section(doc: Any, blob_sizes: dict[str, int], where: str = f"manifest.json: {KEY}") -> EnginePackages:
    """The section as the signed manifest lists it, checked against the bundle's blobs (hex ->
    size); raises ValueError naming the entry."""
    if not isinstance(doc, dict) or set(doc) != {"platform", "engine", "packages"}:
        raise ValueError(f"{where}: expected {{platform, engine, packages}}")
    plat = platform_named(doc["platform"]) if isinstance(doc["platform"], str) else None
    if plat is None:
        raise ValueError(f"{where}: platform: unknown {str(doc['platform'])[:40]!r}")
    if doc["engine"] != plat.engine:
        raise ValueError(f"{where}: engine: expected {plat.engine!r} for {plat.name}")
    items = doc["packages"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_PACKAGES:
        raise ValueError(f"{where}: packages: expected a list of 1 to {MAX_PACKAGES} packages")
    packages = [_package(item, f"{where}.packages[{i}]", blob_sizes) for i, item in enumerate(items)]
    names = [p.name for p in packages]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: packages: {twice[0]} listed twice")
    if plat.engine not in names:
        raise ValueError(f"{where}: packages: the engine package {plat.engine} is missing")
    return EnginePackages(plat.name, plat.engine, tuple(packages))


def _package(item: Any, where: str, blob_sizes: dict[str, int]) -> Package:
    if not isinstance(item, dict) or set(item) != FIELDS:
        raise ValueError(f"{where}: expected {{name, version, architecture, digest, size}}")
    name, version, arch, size = item["name"], item["version"], item["architecture"], item["size"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"{where}: name: not a Debian package name")
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise ValueError(f"{where}: version: not a Debian version")
    if arch not in ARCHES:
        raise ValueError(f"{where}: architecture: expected one of {', '.join(ARCHES)}")
    m = DIGEST.fullmatch(item["digest"]) if isinstance(item["digest"], str) else None
    if m is None:
        raise ValueError(f"{where}: digest: not a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_PACKAGE_SIZE:
        raise ValueError(f"{where}: size: expected an integer from 1 to {MAX_PACKAGE_SIZE}")
    have = blob_sizes.get(m.group(1))
    if have is None:
        raise ValueError(f"{where}: {BLOB_PREFIX}{m.group(1)}: missing blob ({name})")
    if have != size:
        raise ValueError(f"{where}: size {size} differs from blob {m.group(1)[:12]} ({have} bytes)")
    return Package(name, version, arch, m.group(1), size)


def check_section(bundle: Any, doc: Any, fail: Callable[[Any, str], Exception]) -> EnginePackages:
    """For the reader: the section of *bundle* (a reader.Bundle), or *fail*(bundle, message)
    raised (its one-line BundleError)."""
    sizes = {p[len(BLOB_PREFIX):]: r.size for p, r in bundle.files.items() if p.startswith(BLOB_PREFIX)}
    try:
        return parse_section(doc, sizes)
    except ValueError as exc:
        raise fail(bundle, str(exc)) from None


def of_bundle(bundle: Any) -> EnginePackages | None:
    return getattr(bundle, "engine_packages", None)


def statement_section(bundle: Any) -> dict[str, Any] | None:
    found = of_bundle(bundle)
    return found.to_json() if found is not None else None


@dataclass(frozen=True)
class DebFile:
    """A resolved package on the build machine: its control fields and its file."""

    name: str
    version: str
    architecture: str
    path: Any  # pathlib.Path


def add_to_layout(layout: Any, plat: Platform, debs: list[DebFile]) -> EnginePackages:
    """Stream each .deb into *layout* (a LayoutWriter) as a blob; the section for the manifest."""
    packages = []
    for deb in sorted(debs, key=lambda d: d.name):
        size = deb.path.stat().st_size
        with open(deb.path, "rb") as fh:
            record = layout.stream_blob(fh, size)
        packages.append(Package(deb.name, deb.version, deb.architecture, record.sha256, size))
    found = EnginePackages(plat.name, plat.engine, tuple(packages))
    parse_section(found.to_json(), {p.digest: p.size for p in packages})  # what the reader will demand
    return found
