"""`tvdeploy plan SITE`: one plan across every layer, in the order `apply` runs them — VMs, the
Docker Engine (when the bundle carries its packages), TLS and swarm, images (what the bundle
would import), policy (the gates), services (what the release would change). Changes nothing.
A layer that cannot be planned yet (the nodes do not exist before the VMs do) says so and counts
as a change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import TvdeployError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

LAYERS = ("vms", "engine", "swarm", "images", "policy", "services")


@dataclass
class LayerPlan:
    layer: str
    changes: bool
    summary: str
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "changes": self.changes, "summary": self.summary, "steps": self.steps,
                "problems": self.problems, "skipped": self.skipped}


@dataclass
class SitePlan:
    site: str
    layers: list[LayerPlan]

    @property
    def changes(self) -> bool:
        return any(layer.changes for layer in self.layers)

    @property
    def problems(self) -> list[str]:
        return [f"{layer.layer}: {p}" for layer in self.layers for p in layer.problems]

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "changes": self.changes, "layers": [layer.to_json() for layer in self.layers]}


def plan_vms(site: Site) -> LayerPlan:
    if site.vcenter is None:
        return LayerPlan("vms", False, "no vcenter section: the nodes are given", skipped=True)
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.facts.vms import gather, read_site_id
    from tvdeploy.plan.vms import plan_vms as plan

    with connect(site) as session:
        p = plan(site, gather(session, session.placement()), read_site_id(site))
    steps = [f"{s.kind} {s.name}" for s in p.steps if s.kind not in ("no-op",)]
    counts: dict[str, int] = {}
    for s in p.steps:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return LayerPlan("vms", p.changes, ", ".join(f"{n} {k}" for k, n in counts.items()), steps,
                     [f"vm {c.name}: conflict: {c.reason}" for c in p.conflicts])


def plan_swarm(site: Site, reporter: Reporter) -> LayerPlan:
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.execute.swarm_session import Clients, survey
    from tvdeploy.plan.preflight import blocking

    with open_pool(site, reporter=reporter) as pool, Clients() as clients:
        view = survey(site, pool, clients, reporter)
    unreachable = view.tls_plan is None
    tls_steps = [] if view.tls_plan is None else [f"tls {s}" for s in view.tls_plan.steps]
    steps = tls_steps + [f"{s.kind} {s.node or ''}".strip() for s in view.plan.steps]
    if unreachable:
        return LayerPlan("swarm", True, "nodes not reachable yet: TLS and swarm formation follow the VMs",
                         steps, [])
    problems = [f.message for f in blocking(view.findings)] + list(view.plan.problems)
    summary = f"{len(tls_steps)} TLS change(s), {len(view.plan.steps)} swarm step(s)"
    return LayerPlan("swarm", bool(steps), summary, steps, problems)


def plan_engine(site: Site, verified: Any, reporter: Reporter) -> LayerPlan | None:
    """What `engine install` would do on each node; None (no layer, as in `apply`) when the
    bundle carries no engine packages."""
    from tvdeploy.bundle.images import BundleFile
    from tvdeploy.execute.engine_install import make_plan
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.plan.engine import changes

    bf = BundleFile(verified)
    wanted = bf.bundle.engine_packages
    if wanted is None:
        return None
    with open_pool(site, reporter=reporter) as pool:
        p = make_plan(site, bf, pool)
    steps = [f"{s.kind} {s.node}: {s.reason}" for s in p.steps if s.kind != "no-op"]
    problems = [f"node {s.node}: {s.reason}" for s in p.steps if s.kind in ("unsupported", "differs")]
    summary = (f"Docker Engine {wanted.engine_version}: {len(steps)} node(s) to install or start" if steps
               else f"Docker Engine {wanted.engine_version} on every node")
    return LayerPlan("engine", changes(p.steps), summary, steps, problems)


def plan_images(site: Site, verified: Any) -> tuple[LayerPlan, str | None]:
    """(the layer, the bundle's release id)."""
    from tvdeploy.execute.import_records import read_local_last
    from tvdeploy.release.import_state import AlreadyImported, check_replay

    b = verified.verified.bundle
    rel = b.release
    try:
        check_replay(rel["release"], rel["sequence"], b.manifest_sha256, read_local_last(site))
    except AlreadyImported:
        return LayerPlan("images", False, f"release {rel['release']} already imported"), str(rel["release"])
    except TvdeployError as exc:
        return LayerPlan("images", True, "refused", [], [exc.message]), str(rel["release"])
    return (LayerPlan("images", True, f"import release {rel['release']} (sequence {rel['sequence']}): "
                      f"{len(rel['images'])} images", [f"import {svc}" for svc in sorted(rel["images"])]),
            str(rel["release"]))


def plan_services(site: Site, site_path: Path, release: str | None, will_import: bool) -> tuple[LayerPlan, LayerPlan]:
    """(services, policy) for RELEASE."""
    if release is None:
        skipped = LayerPlan("services", False, "no --release (or bundle) given", skipped=True)
        return skipped, LayerPlan("policy", False, "stack gate: no release to check", skipped=True)
    from tvdeploy.execute.release_deploy import Target, plan

    try:
        p = plan(site, Target("deploy", release))
    except TvdeployError as exc:
        if will_import or "not imported" in exc.message or "no active swarm manager" in exc.message \
                or "no manager answers" in exc.message or "not found" in exc.message:
            return (LayerPlan("services", True, f"deploy release {release} once the layers before are done"),
                    LayerPlan("policy", False, "stack gate: checked when the release is imported", skipped=True))
        raise
    changed = [s for s in p.plan.steps if s.action != "noop"]
    services = LayerPlan("services", p.plan.changes,
                         f"release {release}: {len(changed)} to change, {len(p.plan.steps) - len(changed)} unchanged",
                         [f"{s.action} {s.service}" + (f" ({', '.join(s.changes)})" if s.changes else "")
                          for s in changed], list(p.plan.problems))
    try:
        policy_gate_check(site, site_path, p)
        policy = LayerPlan("policy", False, "stack gate: passes")
    except TvdeployError as exc:
        policy = LayerPlan("policy", False, "stack gate: fails", [], [exc.message])
    return services, policy


def policy_gate_check(site: Site, site_path: Path, p: Any) -> None:
    """The gate without an audit record (a plan changes nothing, so it records nothing)."""
    from tvdeploy.errors import RefusedError
    from tvdeploy.policy.gate import check_stack

    result = check_stack(site, site_path, p.rendered.compose, source=str(p.rendered.template))
    if result.blocking:
        raise RefusedError(result.message())


def plan_site(site: Site, site_path: Path, bundle: Path | None, trust: Path | None, release: str | None,
              reporter: Reporter) -> SitePlan:
    vms = plan_vms(site)
    engine: LayerPlan | None = None
    bundle_release: str | None = None
    if bundle is None:
        images = LayerPlan("images", False, "no --bundle given", skipped=True)
    elif trust is None:
        images = LayerPlan("images", True, "a bundle needs a trust root", [], ["no trust root: --trust or trust.root"])
    else:
        from tvdeploy.bundle.chunkbundle import verify_bundle_path

        verified = verify_bundle_path(bundle, trust, reporter=reporter)  # once, for both layers
        images, bundle_release = plan_images(site, verified)
        if not vms.changes:  # the nodes exist: their engines can be read
            engine = plan_engine(site, verified, reporter)
        elif verified.verified.bundle.engine_packages is not None:
            engine = LayerPlan("engine", True, "install the bundle's Docker Engine once the VMs exist")
    if engine is not None and engine.changes:  # no dockerd yet to read TLS or swarm facts from
        swarm = LayerPlan("swarm", True, "TLS and swarm formation follow the engine install")
    else:
        swarm = plan_swarm(site, reporter)
    target = release or bundle_release
    if vms.changes or (engine is not None and engine.changes) or (swarm.changes and not swarm.steps):
        services = LayerPlan("services", bool(target), f"deploy release {target} after the nodes exist"
                             if target else "no --release (or bundle) given", skipped=not target)
        policy = LayerPlan("policy", False, "stack gate: checked at deploy time", skipped=True)
    else:
        services, policy = plan_services(site, site_path, target, images.changes)
    return SitePlan(site.site.name, [vms, *([engine] if engine else []), swarm, images, policy, services])
