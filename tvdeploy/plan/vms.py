"""Plan the site's VMs: (site, facts, site id, prune) -> Plan. Pure: no I/O.

Per declared node: ``create`` / ``update`` (cpus, memory_mb, disk_gb grow, network, identity;
says whether a power cycle is needed) / ``power-on`` / ``no-op``; a VM of that name without this
site's marker is a ``conflict`` and is never changed. VMs with this site's marker that the site
file no longer declares are ``orphan`` (kept) or, with prune, ``delete-orphan``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Literal

from tvdeploy.config.site import Node, Site
from tvdeploy.facts.vms import VmFact

StepKind = Literal["create", "update", "power-on", "no-op", "orphan", "delete-orphan", "delete", "conflict"]
CHANGING: frozenset[str] = frozenset({"create", "update", "power-on", "delete-orphan", "delete"})
DEFAULT_DOMAIN = "localdomain"

# Changes that a running guest cannot take without a restart (we do not rely on hot-add) and
# guest customization, which vSphere applies at the next boot of a powered-off VM.
NEEDS_POWER_CYCLE: frozenset[str] = frozenset({"cpus", "memory_mb", "identity"})


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class DesiredVm:
    name: str
    cpus: int
    memory_mb: int
    disk_gb: int
    network: str
    address: str
    prefix_len: int
    gateway: str | None
    dns: tuple[str, ...]
    domain: str

    @property
    def identity(self) -> str:
        """What guest customization applies, as recorded on the VM once the guest shows it."""
        dns = ",".join(self.dns) or "-"
        return f"{self.name}.{self.domain} {self.address}/{self.prefix_len} gw={self.gateway or '-'} dns={dns}"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    name: str
    changes: tuple[Change, ...] = ()
    power_cycle: bool = False
    power_on: bool = False
    reason: str = ""
    moid: str | None = None
    desired: DesiredVm | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.changes:
            out["changes"] = [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes]
        if self.kind == "update":
            out["power_cycle"] = self.power_cycle
        if self.kind in ("create", "update"):
            out["power_on"] = self.power_on
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    @property
    def changes(self) -> bool:
        return any(s.kind in CHANGING for s in self.steps)

    @property
    def conflicts(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.kind == "conflict")

    def to_dict(self) -> dict[str, Any]:
        return {"changes": self.changes, "steps": [s.to_dict() for s in self.steps]}


def desired_vms(site: Site) -> list[DesiredVm]:
    if site.vcenter is None:
        return []
    return [_desired(node, site) for node in site.nodes]


def _desired(node: Node, site: Site) -> DesiredVm:
    assert site.vcenter is not None
    net = site.network
    return DesiredVm(
        name=node.name,
        cpus=node.cpus,
        memory_mb=node.memory_mb,
        disk_gb=node.disk_gb,
        network=site.vcenter.network,
        address=str(node.address),
        prefix_len=net.subnet.prefixlen,
        gateway=str(net.gateway) if net.gateway is not None else None,
        dns=tuple(str(IPv4Address(d)) for d in net.dns),
        domain=net.domain or DEFAULT_DOMAIN,
    )


def plan_vms(site: Site, facts: Iterable[VmFact], site_id: str | None, prune: bool = False) -> Plan:
    vms = [f for f in facts if not f.template]
    by_name: dict[str, list[VmFact]] = {}
    for vm in vms:
        by_name.setdefault(vm.name, []).append(vm)
    steps: list[Step] = []
    declared = set()
    for want in desired_vms(site):
        declared.add(want.name)
        steps.append(_plan_node(want, by_name.get(want.name, []), site_id, [f for f in facts if f.template]))
    for vm in sorted(vms, key=lambda v: (v.name, v.moid)):
        if vm.name in declared or not _owned(vm, site_id):
            continue
        if prune:
            steps.append(Step("delete-orphan", vm.name, moid=vm.moid, reason="not declared in the site file"))
        else:
            steps.append(Step("orphan", vm.name, moid=vm.moid, reason="not declared; --prune deletes it"))
    return Plan(tuple(steps))


def _owned(vm: VmFact, site_id: str | None) -> bool:
    return site_id is not None and vm.marker == site_id


def _plan_node(want: DesiredVm, found: list[VmFact], site_id: str | None, templates: list[VmFact]) -> Step:
    if any(t.name == want.name for t in templates):
        return Step("conflict", want.name, reason="a template of that name is in the site folder; left alone")
    if not found:
        return Step("create", want.name, power_on=True, desired=want)
    ours = [vm for vm in found if _owned(vm, site_id)]
    if len(found) > 1:
        return Step("conflict", want.name, reason=f"{len(found)} VMs of that name in the site folder; left alone")
    if not ours:
        vm = found[0]
        why = "carries another site's marker" if vm.marker else "has no tvdeploy marker"
        return Step("conflict", want.name, moid=vm.moid, reason=f"existing VM {why}; left alone")
    vm = ours[0]
    changes, refusal = diff_vm(want, vm)
    if refusal:
        return Step("conflict", want.name, moid=vm.moid, reason=refusal)
    running = vm.power == "poweredOn"
    if changes:
        cycle = running and any(c.field in NEEDS_POWER_CYCLE for c in changes)
        return Step(
            "update", want.name, tuple(changes), power_cycle=cycle, power_on=True, moid=vm.moid, desired=want
        )
    if not running:
        return Step("power-on", want.name, moid=vm.moid, power_on=True, desired=want)
    return Step("no-op", want.name, moid=vm.moid, desired=want)


def diff_vm(want: DesiredVm, vm: VmFact) -> tuple[list[Change], str]:
    changes: list[Change] = []
    if vm.cpus != want.cpus:
        changes.append(Change("cpus", vm.cpus, want.cpus))
    if vm.memory_mb != want.memory_mb:
        changes.append(Change("memory_mb", vm.memory_mb, want.memory_mb))
    disk = vm.disks[0].capacity_gb if vm.disks else None
    if disk is None:
        return [], "the VM has no disk to grow"
    if disk > want.disk_gb:
        return [], f"disk is {disk} GB, the site file says {want.disk_gb} GB: disks are never shrunk"
    if disk < want.disk_gb:
        changes.append(Change("disk_gb", disk, want.disk_gb))
    if not vm.nics:
        return [], "the VM has no network adapter to customize"
    if vm.nics[0].network != want.network:
        changes.append(Change("network", vm.nics[0].network, want.network))
    if vm.identity != want.identity:
        changes.append(Change("identity", vm.identity, want.identity))
    return changes, ""


def plan_destroy(facts: Iterable[VmFact], site_id: str | None) -> Plan:
    """``vm destroy``: every VM under the site folder with this site's marker, nothing else."""
    return Plan(
        tuple(
            Step("delete", vm.name, moid=vm.moid, reason="carries this site's marker")
            for vm in sorted(facts, key=lambda v: (v.name, v.moid))
            if not vm.template and _owned(vm, site_id)
        )
    )


def list_rows(site: Site, facts: Iterable[VmFact], site_id: str | None) -> list[dict[str, Any]]:
    """``vm list``: declared nodes first (``absent`` when no VM has their name), then every other
    VM in the site folder; ``owned`` says whether it carries this site's marker."""
    vms = [f for f in facts if not f.template]
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for node in site.nodes:
        matches = [vm for vm in vms if vm.name == node.name]
        if not matches:
            rows.append(
                {"name": node.name, "ip": None, "power": "absent", "cpus": None, "memory_mb": None, "owned": False}
            )
        for vm in matches:
            rows.append(_row(vm, site_id))
            seen.add(vm.moid)
    rows.extend(_row(vm, site_id) for vm in vms if vm.moid not in seen)
    return rows


def _row(vm: VmFact, site_id: str | None) -> dict[str, Any]:
    return {
        "name": vm.name,
        "ip": vm.ip,
        "power": vm.power,
        "cpus": vm.cpus,
        "memory_mb": vm.memory_mb,
        "owned": _owned(vm, site_id),
    }
