"""A minimal Debian 12 root filesystem, made once with ``mmdebstrap`` and cached.

It stands for the security department's template VM: Debian 12 ``minbase`` plus
``openssh-server``, ``iproute2`` and ``openssl`` (tvdeploy makes each node's TLS key on the node
with it), and no Docker. Two users:

- the lab's bare nodes (``lab up --bare``) run on it: the tarball is unpacked once beside it
  (``<name>/``) and each node overlays its own upper folder on that tree;
- ``bundle build --engine-packages debian-12`` resolves Docker Engine's packages against its
  ``/var/lib/dpkg/status``: whatever the template lacks goes into the bundle.

The cache folder is ``$TVDEPLOY_ROOTFS_CACHE`` or ``~/.cache/tvdeploy/rootfs``, shared by every
lab on the machine (a CI run builds it once, ~30 s; about 200 MB). The name carries a hash of the
mmdebstrap arguments, so a changed recipe never reuses an old root. Building goes to a temporary
name under a lock and is renamed into place when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tvdeploy.errors import TvdeployError

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("openssh-server", "iproute2", "openssl")  # openssl: tvdeploy makes node keys on the node
STATUS_MEMBER = "./var/lib/dpkg/status"
MAX_STATUS = 16 * 1024 * 1024


class RootfsError(TvdeployError):
    """The root filesystem could not be made or read."""


def mmdebstrap_argv(output: Path) -> list[str]:
    return ["mmdebstrap", "--quiet", "--format=tar", f"--variant={VARIANT}", "--include=" + ",".join(INCLUDE),
            SUITE, str(output)]


def rootfs_name() -> str:
    recipe = " ".join(mmdebstrap_argv(Path("OUT")))
    return f"debian-12-{VARIANT}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def cache_dir() -> Path:
    env = os.environ.get("TVDEPLOY_ROOTFS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tvdeploy" / "rootfs"


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(cache / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tarball(cache: Path | None = None) -> Path:
    """The cached root tarball, made with mmdebstrap when absent (needs Debian's mirror)."""
    cache = cache or cache_dir()
    path = cache / f"{rootfs_name()}.tar"
    if path.is_file():
        return path
    with _locked(cache):
        if path.is_file():
            return path
        if path.exists():
            raise RootfsError(f"{path}: not a file; remove it to rebuild the root")
        if shutil.which("mmdebstrap") is None:
            raise RootfsError("mmdebstrap is not installed (apt-get install -y mmdebstrap)")
        tmp = path.with_name(f".{path.stem}.partial.tar")
        tmp.unlink(missing_ok=True)
        proc = subprocess.run(mmdebstrap_argv(tmp), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1][:200]
            raise RootfsError(f"mmdebstrap failed (exit {proc.returncode}): {last}")
        os.replace(tmp, path)
    return path


def tree(cache: Path | None = None) -> Path:
    """The cached root unpacked (read-only lower layer of the lab's bare nodes)."""
    cache = cache or cache_dir()
    tar = tarball(cache)
    path = cache / rootfs_name()
    if (path / "etc" / "debian_version").is_file():
        return path
    with _locked(cache):
        if (path / "etc" / "debian_version").is_file():
            return path
        tmp = cache / f".{path.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755)
        proc = subprocess.run(["tar", "--numeric-owner", "-xpf", str(tar), "-C", str(tmp)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RootfsError(f"{tar}: cannot unpack: {proc.stderr.strip()[:200]}")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    return path


def baseline_status(cache: Path | None = None) -> bytes:
    """The dpkg status file of the minimal root: the packages a bare node has already."""
    tar = tarball(cache)
    try:
        with tarfile.open(tar) as tf:
            member = tf.getmember(STATUS_MEMBER)
            if not member.isfile() or member.size > MAX_STATUS:
                raise RootfsError(f"{tar}: {STATUS_MEMBER} is not a plain file under {MAX_STATUS} bytes")
            fh = tf.extractfile(member)
            assert fh is not None
            return fh.read()
    except (KeyError, tarfile.TarError, OSError) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")
        raise RootfsError(f"{tar}: cannot read {STATUS_MEMBER}: {why}; remove the file to rebuild it") from None
