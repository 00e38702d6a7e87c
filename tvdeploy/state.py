"""Operator state: ``$TVDEPLOY_HOME`` (default ``~/.local/share/tvdeploy``).

One folder per site name (site CA, issued certificates, client certificate, known_hosts,
escrowed unlock key, last import, audit log copy and checkpoints); keys in ``keys/``.
Files holding secrets are written 0600 atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def home() -> Path:
    env = os.environ.get("TVDEPLOY_HOME")
    base = Path(env) if env else Path.home() / ".local" / "share" / "tvdeploy"
    return base


def keys_dir() -> Path:
    return home() / "keys"


def site_dir(site_name: str, override: Path | None = None) -> Path:
    """The state folder of one site; the site file's ``state_dir`` overrides it."""
    return override if override is not None else home() / "sites" / site_name


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write *data* to *path* via a temporary file in the same folder, so a crash never leaves
    half a file behind; the file gets *mode* before any byte is written."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def fsync_dir(path: Path, *, tolerant: bool = False) -> None:
    """Make a rename or a new file in folder *path* durable. *tolerant*: a folder that cannot be
    opened or synced (some removable-media file systems) is left as it is; its files are synced."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if tolerant:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not tolerant:
            raise
    finally:
        os.close(fd)
