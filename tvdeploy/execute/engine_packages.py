"""Docker Engine packages for ``bundle build --engine-packages PLATFORM``: resolved against the
minimal Debian root's package status (tvdeploy.connectors.debroot: the template VM), downloaded
with the build machine's apt into a private folder (tvdeploy.connectors.apt_engine), handed to
the bundle writer (tvdeploy.bundle.engine_packages)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tvdeploy.bundle.engine_packages import DebFile, Platform, platform
from tvdeploy.errors import RefusedError
from tvdeploy.reporting import Reporter

Resolved = tuple[Platform, list[DebFile]]


@contextmanager
def resolved(key: str | None, beside: Path, reporter: Reporter) -> Iterator[Resolved | None]:
    """The platform and its .deb files, in a folder beside *beside* removed afterwards."""
    if key is None:
        yield None
        return
    from tvdeploy.connectors import apt_engine, debroot

    try:
        plat = platform(key)
    except ValueError as exc:
        raise RefusedError(f"--engine-packages: {exc}") from None
    if apt_engine.os_version_id() != plat.version_id:
        raise RefusedError(f"--engine-packages {key}: the build machine must run Debian {plat.version_id} "
                           f"(its package lists resolve the packages); /etc/os-release says "
                           f"VERSION_ID={apt_engine.os_version_id() or 'nothing'}")
    parent = beside.parent if beside.parent.is_dir() else None
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{beside.name}.engine-"))
    try:
        reporter.info(f"resolving {plat.engine} for {plat.name} against a minimal Debian root")
        found = apt_engine.download(plat.engine, plat.architecture, work, debroot.baseline_status())
        yield plat, [DebFile(name, version, arch, path) for name, version, arch, path in found]
    finally:
        shutil.rmtree(work, ignore_errors=True)
