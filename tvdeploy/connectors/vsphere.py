"""vSphere over pyvmomi: the only module that talks to vCenter.

The connection pins the vCenter certificate (``vcenter.fingerprint``, SHA-256 of the DER
certificate) or verifies it against ``vcenter.ca_file``. The pin is checked inside the TLS
handshake of *every* connection pyvmomi opens, before a byte of HTTP is written; a probe
handshake first turns a mismatch into one clear error with both fingerprints.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tvdeploy.config.types import format_fingerprint
from tvdeploy.errors import ConfigError, ConnectionFailed, RefusedError, TvdeployError, VerificationError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site, VCenter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 120


class StageTimeout(TvdeployError):
    """A stage of a VM operation did not finish in time (names the stage and the VM)."""


class TaskFailed(TvdeployError):
    """A vCenter task ended in error (names the stage and the VM)."""


class PinMismatch(ssl.SSLError):
    """The presented certificate is not the pinned one."""

    def __init__(self, expected: str, presented: str) -> None:
        super().__init__(f"certificate fingerprint {presented} is not the pinned {expected}")
        self.expected = expected
        self.presented = presented


# TLS ---------------------------------------------------------------------------------------
def pinned_context(expected: str) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate whose SHA-256 is *expected*.

    Chain verification is relaxed and the pin is enforced in this same function: the socket
    class installed below compares the peer certificate inside every handshake, before pyvmomi
    (or anything else) can send a byte of HTTP."""

    class PinnedSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            der = self.getpeercert(binary_form=True) or b""
            presented = hashlib.sha256(der).hexdigest()
            if presented != expected:
                self.close()
                raise PinMismatch(expected, presented)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = PinnedSSLSocket
    ctx.check_hostname = False  # pinned: the certificate itself is compared, not its names
    ctx.verify_mode = ssl.CERT_NONE  # pinned: PinnedSSLSocket compares sha256(peer DER) with vcenter.fingerprint
    return ctx


def tls_context(vc: VCenter) -> ssl.SSLContext:
    """The client context for vCenter: CA verification with ``ca_file``, else the pin."""
    if vc.ca_file is not None:
        ctx = ssl.create_default_context(cafile=str(vc.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    assert vc.fingerprint is not None  # the model requires exactly one of the two
    return pinned_context(vc.fingerprint)


def check_certificate(vc: VCenter, ctx: ssl.SSLContext) -> None:
    """One handshake before pyvmomi's first request: unreachable, mismatch and an untrusted
    certificate each become their own one-line error."""
    where = f"{vc.host}:{vc.port}"
    try:
        raw = socket.create_connection((vc.host, vc.port), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ConnectionFailed(f"vcenter.host: cannot reach vCenter at {where}: {_reason(exc)}") from None
    try:
        with ctx.wrap_socket(raw, server_hostname=vc.host):
            pass
    except PinMismatch as exc:
        raise VerificationError(
            f"vcenter.fingerprint: the certificate of {where} does not match the pin: "
            f"expected {format_fingerprint(exc.expected)}, presented {format_fingerprint(exc.presented)}"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise VerificationError(
            f"vcenter.ca_file: the certificate of {where} does not verify against {vc.ca_file}: "
            f"{exc.verify_message}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConnectionFailed(f"vcenter.host: TLS handshake with {where} failed: {_reason(exc)}") from None
    finally:
        raw.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


# Session -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """The vCenter objects the site file names (``vcenter.*``), resolved once per command."""

    datacenter: Any
    cluster: Any
    pool: Any
    datastore: Any
    folder: Any
    template: Any
    network: Any
    network_names: dict[str, str]  # moid -> name, for NIC facts


class VSphere:
    """A logged-in session. Thread-safe for our use: pyvmomi's stub keeps a connection pool."""

    def __init__(self, si: Any, vc: VCenter) -> None:
        self.si = si
        self.vc = vc
        self.content = si.RetrieveContent()
        self._lock = threading.Lock()

    # Queries -----------------------------------------------------------------------------
    def retrieve(self, specs: list[Any]) -> list[Any]:
        """RetrievePropertiesEx with paging: a list of ObjectContent."""
        from pyVmomi import vmodl

        pc = self.content.propertyCollector
        result = pc.RetrievePropertiesEx(specSet=specs, options=vmodl.query.PropertyCollector.RetrieveOptions())
        objects: list[Any] = []
        while result is not None:
            objects.extend(result.objects or [])
            token = result.token
            result = pc.ContinueRetrievePropertiesEx(token=token) if token else None
        return objects

    def view_contents(self, container: Any, types: dict[Any, list[str]], recursive: bool = True) -> list[Any]:
        """Properties of every object of *types* (type -> property paths) under *container*:
        one ContainerView, one retrieval, however many objects."""
        from pyVmomi import vmodl

        vm_types = list(types)
        view = self.content.viewManager.CreateContainerView(container, vm_types, recursive)
        try:
            traversal = vmodl.query.PropertyCollector.TraversalSpec(
                name="view", path="view", skip=False, type=type(view)
            )
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
                propSet=[
                    vmodl.query.PropertyCollector.PropertySpec(type=t, pathSet=paths, all=False)
                    for t, paths in types.items()
                ],
            )
            return self.retrieve([spec])
        finally:
            view.DestroyView()

    # Placement ---------------------------------------------------------------------------
    def placement(self) -> Placement:
        """Resolve every ``vcenter.*`` object with one inventory retrieval; each missing one is
        its own error naming the object and the site-file key."""
        from pyVmomi import vim

        vc = self.vc
        where = f"on {vc.host}"
        contents = self.view_contents(
            self.content.rootFolder,
            {
                vim.Datacenter: ["name", "parent", "vmFolder"],
                vim.ClusterComputeResource: ["name", "parent", "resourcePool"],
                vim.Datastore: ["name", "parent"],
                vim.Network: ["name", "parent"],
                vim.Folder: ["name", "parent"],
                vim.VirtualMachine: ["name", "parent", "config.template"],
            },
        )
        props = {c.obj: {p.name: p.val for p in (c.propSet or [])} for c in contents}
        parent = {o: p.get("parent") for o, p in props.items()}

        def inside(obj: Any, ancestor: Any) -> bool:
            seen = 0
            while obj is not None and seen < 256:
                if obj == ancestor:
                    return True
                obj, seen = parent.get(obj), seen + 1
            return False

        def named(kind: type, name: str, within: Any = None) -> list[Any]:
            return [
                o for o, p in props.items()
                if isinstance(o, kind) and p.get("name") == name and (within is None or inside(o, within))
            ]

        dcs = named(vim.Datacenter, vc.datacenter)
        if not dcs:
            raise ConfigError(f"vcenter.datacenter: datacenter {vc.datacenter!r} not found {where}")
        dc = dcs[0]
        clusters = named(vim.ClusterComputeResource, vc.cluster, dc)
        if not clusters:
            raise ConfigError(
                f"vcenter.cluster: cluster {vc.cluster!r} not found in datacenter {vc.datacenter!r} {where}"
            )
        datastores = named(vim.Datastore, vc.datastore, dc)
        if not datastores:
            raise ConfigError(
                f"vcenter.datastore: datastore {vc.datastore!r} not found in datacenter {vc.datacenter!r} {where}"
            )
        networks = named(vim.Network, vc.network, dc)
        if not networks:
            raise ConfigError(
                f"vcenter.network: network {vc.network!r} not found in datacenter {vc.datacenter!r} {where}"
            )
        folder = self._folder(props, props[dc]["vmFolder"], vc.folder)
        templates = named(vim.VirtualMachine, vc.template, dc)
        if not templates:
            raise ConfigError(
                f"vcenter.template: template {vc.template!r} not found in datacenter {vc.datacenter!r} {where}"
            )
        marked = [t for t in templates if props[t].get("config.template")]
        return Placement(
            datacenter=dc,
            cluster=clusters[0],
            pool=props[clusters[0]]["resourcePool"],
            datastore=datastores[0],
            folder=folder,
            template=(marked or templates)[0],
            network=networks[0],
            network_names={o._moId: p.get("name", "") for o, p in props.items() if isinstance(o, vim.Network)},
        )

    def _folder(self, props: dict[Any, dict[str, Any]], vm_root: Any, path: str) -> Any:
        """``vcenter.folder`` is a path below the datacenter's VM folder, e.g. ``ot/trueverit``."""
        from pyVmomi import vim

        current = vm_root
        for part in [p for p in path.strip("/").split("/") if p]:
            children = [
                o for o, p in props.items()
                if isinstance(o, vim.Folder) and p.get("parent") == current and p.get("name") == part
            ]
            if not children:
                raise ConfigError(
                    f"vcenter.folder: VM folder {path!r} not found in datacenter {self.vc.datacenter!r} "
                    f"on {self.vc.host} (missing {part!r}); the vSphere administrator creates it"
                )
            current = children[0]
        return current

    # Tasks -------------------------------------------------------------------------------
    def wait_task(self, task: Any, stage: str, vm: str, timeout_s: float) -> Any:
        return wait_task(task, stage, vm, timeout_s)

    def wait_for(self, check: Callable[[], bool], stage: str, vm: str, timeout_s: float) -> None:
        wait_for(check, stage, vm, timeout_s)

    # VM operations (each returns when vCenter reports the task done) ------------------------
    def find_vm(self, placement: Placement, name: str) -> Any | None:
        from pyVmomi import vim

        for c in self.view_contents(placement.folder, {vim.VirtualMachine: ["name"]}):
            if any(p.name == "name" and p.val == name for p in (c.propSet or [])):
                return c.obj
        return None

    def vm_by_moid(self, moid: str) -> Any:
        from pyVmomi import vim

        return vim.VirtualMachine(moid, self.si._stub)

    def clone(
        self,
        placement: Placement,
        name: str,
        extra: dict[str, str],
        timeout_s: float,
        *,
        cpus: int,
        memory_mb: int,
        disk_gb: int,
        annotation: str,
    ) -> Any:
        """Clone the template into the site folder, powered off, carrying *extra* (the
        ownership marker) from the first moment the VM exists, with the system disk grown and
        the NIC on the site network as part of the clone.

        Device edits in the clone spec also matter for vcsim 0.24: its clone hands the
        template's device objects to the new VM, so parallel clones of one template share
        disk and NIC objects until each clone has its own (given here, atomically)."""
        from pyVmomi import vim

        changes: list[Any] = []
        for dev in placement.template.config.hardware.device:
            if isinstance(dev, vim.vm.device.VirtualDisk) and not any(
                isinstance(c.device, vim.vm.device.VirtualDisk) for c in changes
            ):
                dev.capacityInKB = max(int(dev.capacityInKB or 0), disk_gb * 1024 * 1024)
                changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=dev))
            elif isinstance(dev, vim.vm.device.VirtualEthernetCard) and not any(
                isinstance(c.device, vim.vm.device.VirtualEthernetCard) for c in changes
            ):
                dev.backing = _network_backing(placement.network)
                dev.macAddress = None  # a new address for the new VM
                dev.addressType = "generated"
                changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=dev))
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=placement.pool, datastore=placement.datastore),
            config=vim.vm.ConfigSpec(
                extraConfig=_options(extra),
                numCPUs=cpus,
                memoryMB=memory_mb,
                annotation=annotation,
                deviceChange=changes,
            ),
            powerOn=False,
            template=False,
        )
        task = placement.template.CloneVM_Task(folder=placement.folder, name=name, spec=spec)
        return self.wait_task(task, "clone", name, timeout_s)

    def reconfigure(
        self,
        vm: Any,
        name: str,
        timeout_s: float,
        *,
        cpus: int | None = None,
        memory_mb: int | None = None,
        disk_gb: int | None = None,
        network: Any = None,
        annotation: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        from pyVmomi import vim

        spec: Any = vim.vm.ConfigSpec()
        if cpus is not None:
            spec.numCPUs = cpus
        if memory_mb is not None:
            spec.memoryMB = memory_mb
        if annotation is not None:
            spec.annotation = annotation
        if extra:
            spec.extraConfig = _options(extra)
        changes = []
        if disk_gb is not None or network is not None:
            for dev in vm.config.hardware.device:
                if disk_gb is not None and isinstance(dev, vim.vm.device.VirtualDisk):
                    dev.capacityInKB = disk_gb * 1024 * 1024
                    changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=dev))
                    disk_gb = None  # the first disk only: the system disk
                elif network is not None and isinstance(dev, vim.vm.device.VirtualEthernetCard):
                    dev.backing = _network_backing(network)
                    changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=dev))
                    network = None
        if changes:
            spec.deviceChange = changes
        self.wait_task(vm.ReconfigVM_Task(spec=spec), "reconfigure", name, timeout_s)

    def customize(
        self,
        vm: Any,
        name: str,
        timeout_s: float,
        *,
        hostname: str,
        domain: str,
        address: str,
        netmask: str,
        gateway: str | None,
        dns: list[str],
    ) -> None:
        """Guest customization (LinuxPrep, fixed IPv4) on the powered-off VM; applied at boot."""
        from pyVmomi import vim

        adapter = vim.vm.customization.IPSettings(
            ip=vim.vm.customization.FixedIp(ipAddress=address),
            subnetMask=netmask,
            gateway=[gateway] if gateway else [],
            dnsDomain=domain,
            dnsServerList=dns,
        )
        spec = vim.vm.customization.Specification(
            identity=vim.vm.customization.LinuxPrep(
                hostName=vim.vm.customization.FixedName(name=hostname), domain=domain, hwClockUTC=True
            ),
            globalIPSettings=vim.vm.customization.GlobalIPSettings(
                dnsServerList=dns, dnsSuffixList=[domain]
            ),
            nicSettingMap=[vim.vm.customization.AdapterMapping(adapter=adapter)],
        )
        self.wait_task(vm.CustomizeVM_Task(spec=spec), "customization", name, timeout_s)

    def power_on(self, vm: Any, name: str, timeout_s: float) -> None:
        self.wait_task(vm.PowerOnVM_Task(), "power-on", name, timeout_s)

    def power_off(self, vm: Any, name: str, timeout_s: float) -> None:
        if vm.runtime.powerState != "poweredOff":
            self.wait_task(vm.PowerOffVM_Task(), "power-off", name, timeout_s)

    def shutdown(self, vm: Any, name: str, timeout_s: float) -> None:
        """A clean guest shutdown when VMware Tools run (a node's dockerd stops its tasks),
        a hard power-off when they do not or the guest does not stop in half the time."""
        if vm.runtime.powerState == "poweredOff":
            return
        if vm.guest.toolsRunningStatus == "guestToolsRunning":
            vm.ShutdownGuest()
            try:
                self.wait_for(lambda: vm.runtime.powerState == "poweredOff", "guest shutdown", name, timeout_s / 2)
                return
            except StageTimeout:
                log.info("vm %s: guest did not shut down in %.0f s; powering off", name, timeout_s / 2)
        self.power_off(vm, name, timeout_s)

    def destroy(self, vm: Any, name: str, timeout_s: float) -> None:
        self.power_off(vm, name, timeout_s)
        self.wait_task(vm.Destroy_Task(), "delete", name, timeout_s)

    def wait_guest_ip(self, vm: Any, name: str, address: str, timeout_s: float) -> None:
        self.wait_for(lambda: vm.guest.ipAddress == address, f"guest IP {address}", name, timeout_s)

    def logout(self) -> None:
        try:
            self.content.sessionManager.Logout()
        except Exception:  # noqa: BLE001 - a failed logout must not hide the command's result
            log.debug("logout failed", exc_info=True)


def wait_task(task: Any, stage: str, vm: str, timeout_s: float) -> Any:
    """Wait for a vCenter task; a timeout or an error names the stage and the VM."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            msg = getattr(info.error, "msg", None) or type(info.error).__name__
            raise TaskFailed(f"vm {vm}: {stage} failed: {msg}")
        if time.monotonic() >= deadline:
            raise StageTimeout(f"vm {vm}: timed out after {timeout_s:g} s in stage {stage}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def wait_for(check: Callable[[], bool], stage: str, vm: str, timeout_s: float) -> None:
    """Poll *check* with back-off until it holds; a timeout names the stage and the VM."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while not check():
        if time.monotonic() >= deadline:
            raise StageTimeout(f"vm {vm}: timed out after {timeout_s:g} s in stage {stage}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)


def _network_backing(network: Any) -> Any:
    from pyVmomi import vim

    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(network=network, deviceName=network.name)


def _options(values: dict[str, str]) -> list[Any]:
    from pyVmomi import vim

    return [vim.option.OptionValue(key=k, value=v) for k, v in values.items()]


def _login(vc: VCenter, ctx: ssl.SSLContext, password: str) -> Any:
    from pyVim.connect import Connect
    from pyVmomi import vim

    where = f"{vc.host}:{vc.port}"
    try:
        return Connect(
            host=vc.host,
            port=vc.port,
            user=vc.user,
            pwd=password,
            sslContext=ctx,
            httpConnectionTimeout=HTTP_TIMEOUT_S,
        )
    except vim.fault.InvalidLogin:
        raise ConnectionFailed(
            f"vcenter.user: vCenter {where} refused the login of {vc.user!r}: wrong user name or "
            "password (vcenter.password)"
        ) from None
    except PinMismatch as exc:
        raise VerificationError(
            f"vcenter.fingerprint: the certificate of {where} does not match the pin: "
            f"expected {format_fingerprint(exc.expected)}, presented {format_fingerprint(exc.presented)}"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectionFailed(f"vcenter.host: cannot talk to vCenter at {where}: {_reason(exc)}") from None


def vcenter_of(site: Site) -> VCenter:
    if site.vcenter is None:
        raise RefusedError(f"site {site.site.name}: no vcenter section in the site file; nothing to provision")
    return site.vcenter


@contextmanager
def connect(site: Site) -> Iterator[VSphere]:
    """A logged-in, pinned session to the site's vCenter; logs out on exit."""
    from tvdeploy.config.secrets import resolve_secret

    vc = vcenter_of(site)
    password = resolve_secret(vc.password, "vcenter.password")
    ctx = tls_context(vc)
    check_certificate(vc, ctx)
    si = _login(vc, ctx, password.reveal())
    session = VSphere(si, vc)
    try:
        yield session
    finally:
        session.logout()
