"""Plan Docker Engine on each node from a bundle's engine packages: (packages, facts, upgrade)
-> one step per node. Pure: no I/O.

Step kinds:
- ``no-op``: the engine package is installed (dpkg ``ii``) at the bundle's version, every other
  package of the bundle is installed, and the engine answers;
- ``start``: as no-op, but no engine answers (start it, check its version);
- ``install``: the engine is absent, or a package is half-installed (an interrupted install):
  copy and install the packages the node lacks (a dependency installed at any version counts as
  present; the engine package must match);
- ``upgrade``: the engine is installed at another version and ``upgrade`` was asked;
- ``differs``: the same without ``upgrade``: reported, never changed;
- ``unsupported``: the node is not the bundle's platform (e.g. not Debian 12 amd64).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from tvdeploy.bundle.engine_packages import EnginePackages, Package
from tvdeploy.facts.engine import EngineFacts

StepKind = Literal["no-op", "start", "install", "upgrade", "differs", "unsupported"]
CHANGING: frozenset[str] = frozenset({"start", "install", "upgrade"})
PLATFORM_OS = {"debian-12-amd64": ("debian", "12", "amd64")}


@dataclass(frozen=True)
class EngineStep:
    node: str
    kind: StepKind
    installed: str  # the engine package's version on the node ("" when absent)
    target: str  # the bundle's
    packages: tuple[Package, ...] = ()  # what to copy and install
    reason: str = ""
    running: str = ""  # the version of the engine that answers now ("" when none)


def plan_node(node: str, wanted: EnginePackages, facts: EngineFacts, upgrade: bool = False) -> EngineStep:
    return replace(_plan_node(node, wanted, facts, upgrade), running=facts.running_version)


def _plan_node(node: str, wanted: EnginePackages, facts: EngineFacts, upgrade: bool) -> EngineStep:
    target = wanted.engine_version
    have = facts.packages.get(wanted.engine)
    installed = have.version if have else ""
    os_want = PLATFORM_OS.get(wanted.platform)
    if os_want is None or (facts.os_id, facts.os_version, facts.architecture) != os_want:
        return EngineStep(node, "unsupported", installed, target, reason=(
            f"node runs {facts.os_id} {facts.os_version} {facts.architecture}; the bundle's packages are for "
            f"{wanted.platform}"))
    if have is not None and have.version != target:
        if not upgrade:
            return EngineStep(node, "differs", installed, target,
                              reason=f"{wanted.engine} {installed} installed; the bundle has {target} (--upgrade)")
        return EngineStep(node, "upgrade", installed, target, _needed(wanted, facts), "")
    needed = _needed(wanted, facts)
    if needed:
        half = [p.name for p in needed if p.name in facts.packages]
        why = f"half-installed: {', '.join(half)}" if half else f"{len(needed)} package(s) missing"
        return EngineStep(node, "install", installed, target, needed, why)
    if not facts.running_version:
        return EngineStep(node, "start", installed, target, reason="installed, but no engine answers")
    return EngineStep(node, "no-op", installed, target)


def _needed(wanted: EnginePackages, facts: EngineFacts) -> tuple[Package, ...]:
    out = []
    for pkg in wanted.packages:
        have = facts.packages.get(pkg.name)
        if have is None or not have.complete or (pkg.name == wanted.engine and have.version != pkg.version):
            out.append(pkg)
    return tuple(out)


def changes(steps: list[EngineStep]) -> bool:
    return any(s.kind in CHANGING or s.kind == "differs" for s in steps)
