"""Run a VM plan through the vSphere connector, a bounded number of VMs at a time.

Resumable by construction: a clone carries the site's marker from the moment it exists, and every
later stage (hardware, customization, power, guest IP, identity record) is planned again from what
vCenter shows. A rerun after a crash at any stage plans an ``update``/``power-on`` for the
half-made VM and finishes it; it never clones a second VM of the same name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.facts.vms import IDENTITY_KEY, MARKER_KEY, VmFact, gather_one
from tvdeploy.plan.vms import NEEDS_POWER_CYCLE, Change, DesiredVm, Plan, Step, diff_vm

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.vsphere import Placement, VSphere
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 4
AUDIT_EVENTS = {
    "create": "vm.create",
    "update": "vm.update",
    "power-on": "vm.power-on",
    "delete-orphan": "vm.delete",
    "delete": "vm.delete",
}

DONE_TEXT = {
    "create": "created",
    "update": "updated",
    "power-on": "powered on",
    "delete-orphan": "deleted",
    "delete": "deleted",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds per stage; a stage that takes longer fails naming itself and the VM."""

    clone: float = 900.0
    reconfigure: float = 300.0
    customization: float = 300.0
    power: float = 300.0
    guest_ip: float = 900.0

    @classmethod
    def scaled(cls, seconds: float) -> Timeouts:
        """Every stage bounded by *seconds* (the --timeout option)."""
        return cls(seconds, seconds, seconds, seconds, seconds)


class _Locked:
    """Serializes reporter and audit calls coming from the worker threads."""

    def __init__(self, reporter: Reporter, audit: Callable[..., None]) -> None:
        self._lock = threading.Lock()
        self._reporter = reporter
        self._audit = audit

    def event(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._reporter.event(kind, **fields)

    def task(self, key: str, description: str, total: int | None = None, unit: str = "items") -> None:
        with self._lock:
            self._reporter.task(key, description, total, unit)

    def advance(self, key: str, description: str) -> None:
        with self._lock:
            self._reporter.advance(key, 1, description)

    def done(self, key: str, description: str | None) -> None:
        with self._lock:
            self._reporter.done(key, description)

    def audit(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._audit(*args, **kwargs)


@dataclass
class _Run:
    site: Site
    session: VSphere
    placement: Placement
    site_id: str
    out: _Locked
    timeouts: Timeouts

    def stage(self, step: Step, stage: str) -> None:
        self.out.event("vm.stage", vm=step.name, stage=stage)
        self.out.advance(step.name, f"{step.name}: {stage}")


def apply_plan(
    site: Site,
    plan: Plan,
    session: VSphere,
    placement: Placement,
    site_id: str,
    reporter: Reporter,
    audit: Callable[..., None],
    parallel: int = DEFAULT_PARALLEL,
    timeouts: Timeouts | None = None,
) -> list[str]:
    """Execute the changing steps of *plan*; returns the names of VMs changed. Failures of some
    VMs do not stop the others; they are raised together at the end (first line + details)."""
    if plan.conflicts:
        first = plan.conflicts[0]
        raise RefusedError(
            f"vm {first.name}: conflict: {first.reason}; nothing was changed",
            details=[f"vm {s.name}: conflict: {s.reason}" for s in plan.conflicts[1:]],
        )
    if parallel < 1:
        raise RefusedError("--parallel must be at least 1")
    run = _Run(site, session, placement, site_id, _Locked(reporter, audit), timeouts or Timeouts())
    work = [s for s in plan.steps if s.kind in AUDIT_EVENTS]
    errors: list[str] = []
    changed: list[str] = []
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="vm") as pool:
        futures = {pool.submit(_execute, run, step): step for step in work}
        for future, step in futures.items():
            try:
                future.result()
                changed.append(step.name)
            except TvdeployError as exc:
                errors.append(exc.message)
            except Exception as exc:  # noqa: BLE001 - pyVmomi faults: one line per VM, keep going
                errors.append(f"vm {step.name}: {step.kind} failed: {_fault_text(exc)}")
    if errors:
        raise TvdeployError(errors[0], details=errors[1:])
    return changed


def _fault_text(exc: BaseException) -> str:
    return getattr(exc, "msg", None) or str(exc) or type(exc).__name__


def _execute(run: _Run, step: Step) -> None:
    event = AUDIT_EVENTS[step.kind]
    run.out.task(step.name, f"{step.name}: {step.kind}", total=None)
    run.out.event("vm.start", vm=step.name, action=step.kind, changes=[c.field for c in step.changes])
    objects = [{"type": "vm", "name": step.name, **({"id": step.moid} if step.moid else {})}]
    try:
        if step.kind == "create":
            _create(run, step)
        elif step.kind in ("delete", "delete-orphan"):
            _delete(run, step)
        else:
            vm = run.session.vm_by_moid(step.moid or "")
            assert step.desired is not None
            fact = gather_one(run.session, vm, run.placement.network_names)
            _converge(run, step, vm, fact, step.desired, list(step.changes))
    except BaseException as exc:
        message = exc.message if isinstance(exc, TvdeployError) else _fault_text(exc)
        run.out.event("vm.failed", vm=step.name, action=step.kind, error=message)
        run.out.done(step.name, f"{step.name}: {step.kind} failed")
        run.out.audit(run.site, event, objects=objects, outcome="failure", error=message)
        raise
    run.out.event("vm.done", vm=step.name, action=step.kind)
    run.out.done(step.name, f"{step.name}: {DONE_TEXT[step.kind]}")
    run.out.audit(run.site, event, objects=objects)


def _create(run: _Run, step: Step) -> None:
    assert step.desired is not None
    run.stage(step, "clone")
    want = step.desired
    vm = run.session.clone(
        run.placement,
        step.name,
        {MARKER_KEY: run.site_id},
        run.timeouts.clone,
        cpus=want.cpus,
        memory_mb=want.memory_mb,
        disk_gb=want.disk_gb,
        annotation=_annotation(run, want),
    )
    fact = gather_one(run.session, vm, run.placement.network_names)
    changes, refusal = diff_vm(step.desired, fact)
    if refusal:
        raise TvdeployError(f"vm {step.name}: the clone of {run.placement.template.name} is unusable: {refusal}")
    _converge(run, step, vm, fact, step.desired, changes)


def _converge(run: _Run, step: Step, vm: Any, fact: VmFact, want: DesiredVm, changes: list[Change]) -> None:
    """Bring one owned VM to *want*: hardware, customization, power, guest IP, identity record."""
    t = run.timeouts
    fields = {c.field for c in changes}
    running = fact.power == "poweredOn"
    if running and fields & NEEDS_POWER_CYCLE:
        run.stage(step, "shutdown")
        run.session.shutdown(vm, step.name, t.power)
        running = False
    if fields & {"cpus", "memory_mb", "disk_gb", "network"}:
        run.stage(step, "reconfigure")
        run.session.reconfigure(
            vm,
            step.name,
            t.reconfigure,
            cpus=want.cpus if "cpus" in fields else None,
            memory_mb=want.memory_mb if "memory_mb" in fields else None,
            disk_gb=want.disk_gb if "disk_gb" in fields else None,
            network=run.placement.network if "network" in fields else None,
            annotation=_annotation(run, want),
        )
    if "identity" in fields and not fact.pending_customization:
        # A customization left pending by an interrupted run is applied at this boot instead.
        run.stage(step, "customization")
        run.session.customize(
            vm,
            step.name,
            t.customization,
            hostname=want.name,
            domain=want.domain,
            address=want.address,
            netmask=str(IPv4Network(f"0.0.0.0/{want.prefix_len}").netmask),
            gateway=want.gateway,
            dns=list(want.dns),
        )
    if not running:
        run.stage(step, "power-on")
        run.session.power_on(vm, step.name, t.power)
    if "identity" in fields or not running:
        run.stage(step, "guest IP")
        run.session.wait_guest_ip(vm, step.name, want.address, t.guest_ip)
    if "identity" in fields:
        run.stage(step, "record identity")
        run.session.reconfigure(vm, step.name, t.reconfigure, extra={IDENTITY_KEY: want.identity})


def _annotation(run: _Run, want: DesiredVm) -> str:
    return f"tvdeploy: site {run.site.site.name}, node {want.name}. Managed by tvdeploy; do not edit."


def _delete(run: _Run, step: Step) -> None:
    vm = run.session.vm_by_moid(step.moid or "")
    fact = gather_one(run.session, vm, run.placement.network_names)
    # Checked again right before deleting: only a VM that still carries our marker goes.
    if fact.marker != run.site_id:
        raise RefusedError(f"vm {step.name}: no longer carries this site's marker; not deleted")
    run.stage(step, "power-off")
    run.session.power_off(vm, step.name, run.timeouts.power)
    run.stage(step, "delete")
    run.session.destroy(vm, step.name, run.timeouts.power)
