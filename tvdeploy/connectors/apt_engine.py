"""Docker Engine's Debian packages, resolved and downloaded on the build machine.

Resolution is ``apt-get install --download-only --no-install-recommends ENGINE`` with the build
machine's own package lists (it must run the same Debian release) but a *private* dpkg status:
the one of the minimal Debian 12 root (``tvdeploy.connectors.debroot``: minbase + sshd +
iproute2, the template VM). apt so resolves as if on a bare node, whatever the build machine
itself has installed, and writes only into a private folder (archives, extended states, no
package cache, no dpkg lock: nothing of the build machine's apt state changes). Then each
``.deb``'s control fields are read with ``dpkg-deb``. The download needs the build machine's
Debian mirror; the nodes never do.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tvdeploy.errors import TvdeployError

Control = tuple[str, str, str, Path]  # (Package, Version, Architecture, file)


class AptError(TvdeployError):
    """The engine packages could not be resolved or downloaded."""


def apt_argv(engine: str, architecture: str, work: Path) -> list[str]:
    return [
        "apt-get", "install", "--download-only", "--no-install-recommends", "-y", "-q",
        "-o", f"Dir::State::status={work / 'status'}",
        "-o", f"Dir::State::extended_states={work / 'extended_states'}",
        "-o", f"Dir::Cache={work / 'cache'}",
        "-o", f"Dir::Cache::archives={work / 'archives'}",
        "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
        "-o", "Debug::NoLocking=1",
        "-o", f"APT::Architecture={architecture}",
        engine,
    ]  # fmt: skip


def os_version_id(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def download(engine: str, architecture: str, work: Path, baseline_status: bytes) -> list[Control]:
    """Resolve and download *engine* and its dependencies missing from *baseline_status* into
    *work*/archives."""
    (work / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (work / "cache").mkdir(exist_ok=True)
    (work / "status").write_bytes(baseline_status)
    proc = subprocess.run(apt_argv(engine, architecture, work), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr.strip() or proc.stdout.strip()).splitlines() if ln.strip()]
        raise AptError(f"apt-get could not download {engine} (exit {proc.returncode}): "
                       f"{lines[-1][:200] if lines else 'no output'}")
    debs = sorted((work / "archives").glob("*.deb"))
    if not debs:
        raise AptError(f"apt-get downloaded no package for {engine}")
    return [control(deb) for deb in debs]


def control(deb: Path) -> Control:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"],
                          capture_output=True, text=True, check=False)
    fields = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    if proc.returncode != 0 or set(fields) != {"Package", "Version", "Architecture"}:
        raise AptError(f"{deb}: not a Debian package ({proc.stderr.strip()[:120] or 'no control fields'})")
    return fields["Package"], fields["Version"], fields["Architecture"], deb
