"""Per-machine registry of lab indexes: ``/run/tvdeploy-lab/registry.json`` maps a lab dir to
its index (which fixes its subnet and interface names). Guarded by an exclusive flock so two
`lab up` runs in parallel never take the same index. /run is cleared on reboot, as are the
kernel objects the indexes name."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tvdeploy.errors import RefusedError
from tvdeploy.lab.layout import MAX_INDEX

RUN_DIR = Path(os.environ.get("TVDEPLOY_LAB_RUN_DIR", "/run/tvdeploy-lab"))


@contextmanager
def _locked() -> Iterator[dict[str, int]]:
    RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = RUN_DIR / "registry.lock"
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        path = RUN_DIR / "registry.json"
        try:
            raw = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            raw = {}
        # A damaged registry is rebuilt from what still parses; bridges guard the rest.
        entries = {k: v for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, dict) else {}
        before = dict(entries)
        yield entries
        if entries != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
            os.replace(tmp, path)


def _key(lab_dir: Path) -> str:
    return str(lab_dir.resolve())


def lookup(lab_dir: Path) -> int | None:
    with _locked() as entries:
        return entries.get(_key(lab_dir))


def allocate(lab_dir: Path, wanted: int | None = None) -> int:
    """The index of *lab_dir*, allocating the lowest free one (or *wanted*, from the lab's own
    state file, when it is still free)."""
    with _locked() as entries:
        key = _key(lab_dir)
        if key in entries:
            return entries[key]
        used = set(entries.values())
        if wanted is not None and wanted not in used:
            entries[key] = wanted
            return wanted
        for index in range(1, MAX_INDEX + 1):
            if index not in used and not _bridge_exists(index):
                entries[key] = index
                return index
    raise RefusedError(f"no free lab index in {RUN_DIR}/registry.json ({MAX_INDEX} labs exist)")


def release(lab_dir: Path) -> None:
    with _locked() as entries:
        entries.pop(_key(lab_dir), None)


def _bridge_exists(index: int) -> bool:
    # A bridge left by a lab whose registry entry was lost: never reuse its index.
    return Path(f"/sys/class/net/tvlab{index}").exists()


@contextmanager
def lab_lock(lab_dir: Path) -> Iterator[None]:
    """One mutating lab command at a time per lab dir (two `lab up` of one dir in parallel would
    start every node twice). The lock lives in RUN_DIR, not in the dir `lab down` removes."""
    import hashlib

    name = hashlib.sha256(_key(lab_dir).encode()).hexdigest()[:16]
    try:
        RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(RUN_DIR / f"lab-{name}.lock", "a+")  # noqa: SIM115 - closed below
    except PermissionError:
        # Not root: the command fails at its first real step (the doctor says why).
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
