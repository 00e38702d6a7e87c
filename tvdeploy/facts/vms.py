"""What vCenter holds in the site's VM folder, as plain data (one retrieval for all VMs).

Ownership: every VM tvdeploy creates carries ``config.extraConfig["tvdeploy.site-id"]`` holding
a site-unique id that is generated once and kept in the site's operator state. A VM with another
id (e.g. inherited from a template) or with none is not ours and is never changed.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import state

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.vsphere import Placement, VSphere

log = logging.getLogger(__name__)

MARKER_KEY = "tvdeploy.site-id"
IDENTITY_KEY = "tvdeploy.identity"  # the guest identity applied, recorded once the guest shows it
SITE_ID_FILE = "vsphere-site-id"

VM_PROPERTIES = [
    "name",
    "runtime.powerState",
    "config.template",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "config.extraConfig",
    "config.tools.pendingCustomization",
    "guest.ipAddress",
    "guest.hostName",
]


@dataclass(frozen=True)
class DiskFact:
    label: str
    capacity_gb: int


@dataclass(frozen=True)
class NicFact:
    label: str
    network: str


@dataclass(frozen=True)
class VmFact:
    name: str
    moid: str
    power: str  # poweredOn | poweredOff | suspended
    cpus: int
    memory_mb: int
    template: bool = False
    disks: tuple[DiskFact, ...] = ()
    nics: tuple[NicFact, ...] = ()
    ip: str | None = None
    hostname: str | None = None
    marker: str | None = None
    identity: str | None = None
    pending_customization: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


# Site id -----------------------------------------------------------------------------------
def site_id_path(site: Site) -> Path:
    return state.site_dir(site.site.name, site.state_dir) / SITE_ID_FILE


def read_site_id(site: Site) -> str | None:
    """The site's marker value, or None before the first apply (then nothing is ours)."""
    try:
        value = site_id_path(site).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return value or None


def ensure_site_id(site: Site) -> str:
    """Generate the marker value once per site (apply), keep it in the operator state."""
    existing = read_site_id(site)
    if existing:
        return existing
    value = f"{site.site.name}-{secrets.token_hex(16)}"
    state.write_atomic(site_id_path(site), (value + "\n").encode(), mode=0o600)
    return value


# Parsing (pure) ----------------------------------------------------------------------------
def _extra_config(options: Any) -> dict[str, str]:
    # Later entries win: vcsim appends on reconfigure where vCenter replaces.
    out: dict[str, str] = {}
    for opt in options or []:
        key = getattr(opt, "key", None)
        if isinstance(key, str):
            out[key] = "" if opt.value is None else str(opt.value)
    return out


def parse_devices(devices: Any, network_names: dict[str, str]) -> tuple[tuple[DiskFact, ...], tuple[NicFact, ...]]:
    disks: list[DiskFact] = []
    nics: list[NicFact] = []
    for dev in devices or []:
        label = getattr(getattr(dev, "deviceInfo", None), "label", "") or ""
        # Duck typing keeps this pure: pyVmomi device objects and plain test objects both work.
        if hasattr(dev, "capacityInKB"):
            kb = int(getattr(dev, "capacityInKB", 0) or 0)
            disks.append(DiskFact(label=label, capacity_gb=kb // (1024 * 1024)))
        elif hasattr(dev, "macAddress"):
            backing = getattr(dev, "backing", None)
            name = getattr(backing, "deviceName", None)
            net = getattr(backing, "network", None)
            if not name and net is not None:
                name = network_names.get(getattr(net, "_moId", ""), "")
            nics.append(NicFact(label=label, network=name or ""))
    return tuple(disks), tuple(nics)


def parse_vm(moid: str, props: dict[str, Any], network_names: dict[str, str]) -> VmFact:
    """One VM's retrieved properties -> VmFact (pure: no server needed)."""
    extra = _extra_config(props.get("config.extraConfig"))
    disks, nics = parse_devices(props.get("config.hardware.device"), network_names)
    return VmFact(
        name=str(props.get("name", "")),
        moid=moid,
        power=str(props.get("runtime.powerState", "poweredOff")),
        cpus=int(props.get("config.hardware.numCPU") or 0),
        memory_mb=int(props.get("config.hardware.memoryMB") or 0),
        template=bool(props.get("config.template", False)),
        disks=disks,
        nics=nics,
        ip=props.get("guest.ipAddress") or None,
        hostname=props.get("guest.hostName") or None,
        marker=extra.get(MARKER_KEY) or None,
        identity=extra.get(IDENTITY_KEY) or None,
        pending_customization=bool(props.get("config.tools.pendingCustomization")),
        extra=extra,
    )


# Gathering ---------------------------------------------------------------------------------
def gather(session: VSphere, placement: Placement) -> list[VmFact]:
    """Every VM under the site folder, with one PropertyCollector retrieval."""
    from pyVmomi import vim

    contents = session.view_contents(placement.folder, {vim.VirtualMachine: VM_PROPERTIES})
    facts = [
        parse_vm(c.obj._moId, {p.name: p.val for p in (c.propSet or [])}, placement.network_names)
        for c in contents
    ]
    log.debug("facts: %d VMs under %s", len(facts), session.vc.folder)
    return sorted(facts, key=lambda f: (f.name, f.moid))


def gather_one(session: VSphere, vm: Any, network_names: dict[str, str]) -> VmFact:
    """Facts of one VM (after a clone), in one retrieval."""
    from pyVmomi import vmodl

    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(vm), pathSet=VM_PROPERTIES, all=False)],
    )
    contents = session.retrieve([spec])
    props = {p.name: p.val for c in contents for p in (c.propSet or [])}
    return parse_vm(vm._moId, props, network_names)
