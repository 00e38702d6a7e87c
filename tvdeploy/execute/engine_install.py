"""``engine plan`` / ``engine install``: Docker Engine onto the nodes from a signed bundle, offline.

Order, and why:
1. Verify the bundle strictly (every byte, signature threshold, trust root) before any node is
   contacted: an altered or truncated package is refused before anything is copied.
2. Facts from every node in parallel (``tvdeploy.facts.engine``), a pure plan per node
   (``tvdeploy.plan.engine``). ``plan`` stops here.
3. ``install``, in parallel across nodes, each node only what its step needs: the packages it
   lacks are re-read from the bundle (re-hashed: a bundle swapped after step 1 is caught) and
   written into ``/var/cache/tvdeploy/engine``; the node checks them against the signed digests
   (``sha256sum -c``), then ``dpkg -i`` installs them with no network (``dpkg --configure -a``
   first finishes an install an SSH loss interrupted; a ``policy-rc.d`` of ours keeps package
   scripts from starting services half-way); then the engine is started (systemd when the node
   runs it, else its init script) and its version read back. The copies are removed at the end.
   A rerun after any failure sees half-installed packages in the facts and installs them again.
Every step is an audit record on the site's log: ``engine.install`` per node (packages, versions,
outcome), ``engine.install.refused`` when the plan refuses.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.audit.recorder import record
from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.facts.engine import EngineFacts, parse, probe_command
from tvdeploy.parallel import for_each
from tvdeploy.plan.engine import EngineStep, plan_node

if TYPE_CHECKING:
    from tvdeploy.bundle.engine_packages import EnginePackages, Package
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHConnection, SSHPool
    from tvdeploy.reporting import Reporter

CACHE = "/var/cache/tvdeploy/engine"
GUARD = "/usr/sbin/policy-rc.d"
GUARD_MARK = "# tvdeploy engine install: no service starts while packages are installed"
READY_TRIES = 300  # x 0.2 s: the engine's first start (iptables chains, containerd) takes a few s


@dataclass(frozen=True)
class EnginePlan:
    bundle: Any  # tvdeploy.bundle.images.BundleFile
    packages: EnginePackages
    steps: list[EngineStep]


@dataclass(frozen=True)
class NodeResult:
    node: str
    kind: str
    version: str  # the running engine's version afterwards
    copied: int  # bytes


def open_verified(path: Path, trust_path: Path, reporter: Reporter) -> BundleFile:
    from tvdeploy.bundle.chunkbundle import verify_bundle_path
    from tvdeploy.bundle.images import BundleFile

    bf = BundleFile(verify_bundle_path(path, trust_path, reporter=reporter))
    if bf.bundle.engine_packages is None:
        raise RefusedError(f"{path}: carries no engine packages (bundle build ... --engine-packages debian-12)")
    return bf


def make_plan(site: Site, bf: BundleFile, pool: SSHPool, upgrade: bool = False) -> EnginePlan:
    wanted = bf.bundle.engine_packages
    names = [p.name for p in wanted.packages]

    def facts(node: str) -> EngineStep:
        out = pool.get(node).run(probe_command(names), check=False).stdout
        return plan_node(node, wanted, parse(out), upgrade)

    nodes = [n.name for n in site.nodes]
    return EnginePlan(bf, wanted, for_each(nodes, facts))


def install(site: Site, plan: EnginePlan, pool: SSHPool, reporter: Reporter) -> list[NodeResult]:
    bad = [s for s in plan.steps if s.kind in ("unsupported", "differs")]
    if bad:
        record(site, "engine.install.refused", objects=[_node_object(s) for s in bad], outcome="refused",
               error=f"node {bad[0].node}: {bad[0].reason}")
        raise RefusedError(f"node {bad[0].node}: {bad[0].reason}; nothing was changed",
                           details=[f"node {s.node}: {s.reason}" for s in bad[1:]])

    def one(step: EngineStep) -> NodeResult:
        return _install_node(site, plan, step, pool.get(step.node), reporter)

    return for_each(plan.steps, one, label=lambda s: f"node {s.node}")


def _install_node(site: Site, plan: EnginePlan, step: EngineStep, conn: SSHConnection,
                  reporter: Reporter) -> NodeResult:
    if step.kind == "no-op":
        return NodeResult(step.node, step.kind, step.running, 0)
    objects = [_node_object(step)] + [_package_object(p) for p in step.packages]
    try:
        copied = _copy(plan.bundle, step.packages, conn) if step.packages else 0
        if step.packages:
            reporter.info(f"node {step.node}: installing {len(step.packages)} package(s)")
            conn.run(install_script(step.packages), timeout=600)
        version = _start(conn, restart=step.kind == "upgrade")
        _check_version(step, version, conn)
    except TvdeployError as exc:
        record(site, "engine.install", objects=objects, outcome="failed", error=exc.message)
        raise type(exc)(f"{exc.message} (run 'tvdeploy engine install' again: it finishes what is left)",
                        details=exc.details) from None
    record(site, "engine.install", objects=objects + [{"type": "engine", "name": step.node, "version": version}])
    return NodeResult(step.node, step.kind, version, copied)


def _copy(bf: BundleFile, packages: tuple[Package, ...], conn: SSHConnection) -> int:
    """Each package from the bundle (re-hashed on the way) into the node's cache folder over
    SFTP (owned by the login user: sudo runs dpkg); the node then checks every file against the
    signed digests."""
    total = 0
    q = shlex.quote
    conn.run(f"mkdir -p {CACHE} && chmod 700 {CACHE} && chown {q(conn.target.user)} {CACHE}")
    with bf.open() as fh:
        for pkg in packages:
            total += conn.put_stream(f"{CACHE}/{pkg.filename}", bf.chunks(fh, pkg.digest))
    sums = "".join(f"{p.digest}  {p.filename}\n" for p in packages).encode()
    conn.run(f"cd {CACHE} && sha256sum --check --quiet --strict -", input=sums)
    return total


def install_script(packages: tuple[Package, ...]) -> str:
    """dpkg -i of the copied files, no network, no service started half-way (policy-rc.d), an
    interrupted earlier run finished first (after waiting for its dpkg, if still running); the
    last lines of dpkg's log on failure; the copies removed after success."""
    files = " ".join(shlex.quote(f"{CACHE}/{p.filename}") for p in packages)
    log = "/var/log/tvdeploy-engine-install.log"
    guard = shlex.quote(f"#!/bin/sh\n{GUARD_MARK}\nexit 101\n")
    return (
        "set -e; export DEBIAN_FRONTEND=noninteractive; "
        # A dpkg still running from a run whose SSH connection was lost: wait for it (5 min).
        "busy() { for c in /proc/[0-9]*/comm; do [ \"$(cat \"$c\" 2>/dev/null)\" = dpkg ] && return 0; done; "
        "return 1; }; i=0; while busy; do [ $i -ge 600 ] && { echo 'dpkg is busy (another install?)' >&2; "
        "exit 1; }; sleep 0.5; i=$((i+1)); done; "
        f"if [ ! -e {GUARD} ] || grep -qF {shlex.quote(GUARD_MARK)} {GUARD}; then "
        f"printf '%s' {guard} > {GUARD}; chmod 755 {GUARD}; ours=1; else ours=0; fi; "
        f"trap '[ $ours = 1 ] && rm -f {GUARD}' EXIT; "
        f"dpkg --configure -a >> {log} 2>&1 || true; "
        f"if ! dpkg --force-confdef --force-confold -i {files} >> {log} 2>&1; then "
        f"tail -n 3 {log} >&2; exit 1; fi; "
        f"rm -rf {CACHE}"
    )


def start_script(restart: bool) -> str:
    verb = "restart" if restart else "start"
    wait = (f"i=0; while [ $i -lt {READY_TRIES} ]; do "
            "v=$(docker version --format '{{.Server.Version}}' 2>/dev/null) && [ -n \"$v\" ] && "
            "{ echo \"$v\"; exit 0; }; sleep 0.2; i=$((i+1)); done; "
            "echo 'the engine does not answer after 60 s' >&2; exit 1")
    return (
        f"if [ {str(restart).lower()} = false ] && docker version >/dev/null 2>&1; then :; "
        "elif [ -d /run/systemd/system ]; then "
        f"systemctl enable docker >/dev/null 2>&1 || true; systemctl {verb} docker; "
        f"else /etc/init.d/docker {verb} >/dev/null; fi; {wait}"
    )


def _start(conn: SSHConnection, restart: bool) -> str:
    return conn.run(start_script(restart), timeout=120).stdout.strip().splitlines()[-1]


def _check_version(step: EngineStep, version: str, conn: SSHConnection) -> None:
    """The engine that answers must be the one the bundle installed (Debian's package version
    starts with the engine's: 20.10.24+dfsg1-1+deb12u1 -> 20.10.24+dfsg1)."""
    if not step.target.startswith(version):
        raise TvdeployError(f"node {step.node}: the engine answering is {version}, not the bundle's {step.target}")


def _node_object(step: EngineStep) -> dict[str, str]:
    return {"type": "node", "name": step.node, "step": step.kind, "installed": step.installed,
            "target": step.target}


def _package_object(pkg: Package) -> dict[str, str]:
    return {"type": "engine-package", "name": pkg.name, "version": pkg.version, "digest": f"sha256:{pkg.digest}"}


def facts_of(conn: SSHConnection, names: list[str]) -> EngineFacts:
    return parse(conn.run(probe_command(names), check=False).stdout)


def apply_layer(site: Site, bundle: Path, trust: Path, reporter: Reporter,
                trust_new_hosts: bool = False) -> tuple[bool, str]:
    """``tvdeploy apply``'s engine layer (before TLS + swarm): skipped when the bundle carries
    no engine packages; otherwise plan and install as ``engine install --yes`` (another version
    on a node is refused: upgrading stays an explicit ``engine install --upgrade``)."""
    from tvdeploy.bundle.chunkbundle import verify_bundle_path
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.execute.ssh_pool import open_pool

    bf = BundleFile(verify_bundle_path(bundle, trust, reporter=reporter))
    wanted = bf.bundle.engine_packages
    if wanted is None:
        return False, "the bundle carries no engine packages"
    with open_pool(site, trust_new_hosts=trust_new_hosts, reporter=reporter) as pool:
        results = install(site, make_plan(site, bf, pool), pool, reporter)
    changed = [r.node for r in results if r.kind != "no-op"]
    if not changed:
        return False, f"Docker Engine {wanted.engine_version} on every node"
    return True, f"Docker Engine {wanted.engine_version} installed or started on {', '.join(changed)}"
