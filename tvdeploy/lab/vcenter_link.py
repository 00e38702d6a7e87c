"""The lab's side of the vCenter simulator interface (``tvdeploy.lab.vcenter``, written
separately). If that module is not there, the lab runs without a simulator and says so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tvdeploy.lab.sitefile import VcenterSection

log = logging.getLogger(__name__)


def _module() -> Any | None:
    try:
        from tvdeploy.lab import vcenter
    except ImportError as exc:
        log.debug("no vCenter simulator module: %s", exc)
        return None
    return vcenter


def available() -> bool:
    return _module() is not None


def start(lab_dir: Path, latency_ms: int) -> Any:
    mod = _module()
    return None if mod is None else mod.start_vcenter(lab_dir, latency_ms=latency_ms)


def stop(lab_dir: Path) -> None:
    mod = _module()
    if mod is not None:
        mod.stop_vcenter(lab_dir)


def status(lab_dir: Path) -> Any:
    mod = _module()
    return None if mod is None else mod.vcenter_status(lab_dir)


def section(info: Any) -> VcenterSection:
    return VcenterSection(
        host=str(info.host), port=int(info.port), user=str(info.user),
        password_file=str(info.password_file), fingerprint=str(info.fingerprint),
        datacenter=str(info.datacenter), cluster=str(info.cluster), datastore=str(info.datastore),
        folder=str(info.folder), template=str(info.template), network=str(info.network),
    )  # fmt: skip
