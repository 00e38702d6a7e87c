"""`tvdeploy apply SITE`: every layer in order — VMs, Docker Engine (from the bundle's engine
packages, when it carries them: tvdeploy.execute.engine_install), TLS + swarm, images (bundle
import), services (release deploy, policy-gated) — each a no-op when already converged, then a
policy check of the whole site for the summary.

A resume journal (``<state>/apply/journal.json``, written after each layer) names the run (bundle
digest, release) and the layers done: a rerun after a crash or Ctrl-C says where the last run
stopped and goes on; every layer re-plans from the site's facts, so a layer half done is
finished, never repeated blindly. The journal is removed when the run completes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy import state
from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)


@dataclass
class LayerResult:
    layer: str
    changed: bool
    summary: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "changed": self.changed, "summary": self.summary,
                "seconds": round(self.seconds, 2)}


@dataclass
class ApplyResult:
    site: str
    layers: list[LayerResult] = field(default_factory=list)
    release: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    resumed_after: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "changed": any(x.changed for x in self.layers), "release": self.release,
                "layers": [x.to_json() for x in self.layers], "policy": self.policy,
                "resumed_after": self.resumed_after, "seconds": round(self.seconds, 2)}


class Journal:
    def __init__(self, site: Site, run: dict[str, Any]) -> None:
        self.path = state.site_dir(site.site.name, site.state_dir) / "apply" / "journal.json"
        self.run = run
        self.done: list[str] = []

    def previous(self) -> list[str]:
        try:
            doc = json.loads(self.path.read_bytes())
        except (FileNotFoundError, ValueError):
            return []
        return list(doc.get("done") or []) if doc.get("run") == self.run else []

    def mark(self, layer: str) -> None:
        self.done.append(layer)
        state.ensure_dir(self.path.parent)
        state.write_atomic(self.path, json.dumps({"run": self.run, "done": self.done,
                                                  "time": datetime.now(UTC).isoformat()}).encode(), mode=0o600)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def vms_layer(site: Site, reporter: Reporter) -> tuple[bool, str]:
    if site.vcenter is None:
        return False, "no vcenter section: the nodes are given"
    from tvdeploy.audit.recorder import record
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.execute.vms import Timeouts, apply_plan
    from tvdeploy.facts.vms import ensure_site_id, gather, read_site_id
    from tvdeploy.plan.vms import plan_vms

    with connect(site) as session:
        placement = session.placement()
        facts = gather(session, placement)
        plan = plan_vms(site, facts, read_site_id(site))
        if plan.conflicts:
            c = plan.conflicts[0]
            raise RefusedError(f"vm {c.name}: conflict: {c.reason}; nothing was changed")
        if not plan.changes:
            return False, f"{len(plan.steps)} VMs converged"
        site_id = ensure_site_id(site)
        plan = plan_vms(site, facts, site_id)
        changed = apply_plan(site, plan, session, placement, site_id, reporter, record, parallel=4,
                             timeouts=Timeouts.scaled(900.0))
    return bool(changed), f"{len(changed)} VMs changed"


def engine_layer(site: Site, bundle: Path, trust: Path, reporter: Reporter, trust_new_hosts: bool) -> tuple[bool, str]:
    from tvdeploy.execute.engine_install import apply_layer

    return apply_layer(site, bundle, trust, reporter, trust_new_hosts)


def swarm_layer(site: Site, reporter: Reporter, trust_new_hosts: bool) -> tuple[bool, str]:
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.execute.swarm_bootstrap import bootstrap
    from tvdeploy.execute.swarm_session import Clients

    with open_pool(site, trust_new_hosts=trust_new_hosts, reporter=reporter) as pool, Clients() as clients:
        done = bootstrap(site, pool, clients, reporter, review=lambda view: None, confirm=lambda question: None)
    if not done.changed:
        return False, "TLS and swarm converged"
    return True, f"{done.tls_changes} TLS change(s), {done.swarm_steps} swarm step(s)"


def images_layer(site: Site, site_path: Path, bundle: Path, trust: Path, reporter: Reporter) -> tuple[bool, str]:
    from tvdeploy.execute.import_bundle import import_verified, policy_gate, verify_and_check
    from tvdeploy.execute.ssh_pool import open_pool
    from tvdeploy.release.import_state import AlreadyImported

    with open_pool(site, reporter=reporter) as pool:
        try:
            verified, _last = verify_and_check(site, bundle, trust, pool, reporter)
        except AlreadyImported as same:
            return False, same.message
        policy_gate(site, site_path, verified, trust)
        result = import_verified(site, verified, pool, reporter)
    return True, f"release {result.release} imported ({result.bytes_moved} bytes moved)"


def services_layer(site: Site, site_path: Path, release: str, reporter: Reporter) -> tuple[bool, str]:
    from tvdeploy.execute.release_deploy import Target, run

    result = run(site, site_path, Target("deploy", release), reporter)
    if not result.changed and not result.removed:
        return False, f"release {release}: every service converged"
    return True, f"release {release}: {len(result.changed)} service(s) rolled out"


def policy_summary(site: Site, site_path: Path, reporter: Reporter) -> dict[str, Any]:
    """The whole site's policy check (live targets), kept for the audit report."""
    from tvdeploy.audit.recorder import utc_now
    from tvdeploy.execute.policy_observe import observe, targets_for
    from tvdeploy.policy import gate, last

    targets = targets_for([], has_bundle=False)
    facts, _stats = observe(site, site_path, targets, reporter=reporter)
    result = gate.evaluate(site, site_path, facts, targets)
    doc = result.to_dict()
    last.save(site, doc, utc_now(), str(site_path))
    return {"blocking": len(result.blocking), "summary": doc.get("summary", {}), "fail_on": site.policies.fail_on}


def bundle_release(bundle: Path) -> tuple[str, str, bool]:
    """(release id, manifest sha256, whether it carries engine packages) of a bundle, read
    strictly (verification comes at import)."""
    from tvdeploy.bundle.reader import read_bundle

    b = read_bundle(bundle)
    return str(b.release["release"]), b.manifest_sha256, b.engine_packages is not None


def apply_site(site: Site, site_path: Path, *, bundle: Path | None, trust: Path | None, release: str | None,
               trust_new_hosts: bool, reporter: Reporter) -> ApplyResult:
    from tvdeploy.audit.recorder import prepare as unlock_operator_key

    unlock_operator_key()
    t0 = time.monotonic()
    if bundle is not None and trust is None:
        raise RefusedError(f"{site_path}: --bundle needs a trust root: pass --trust ROOT or set trust.root")
    run: dict[str, Any] = {"bundle": None, "release": release}
    engine = False
    if bundle is not None:
        bundle_id, digest, engine = bundle_release(bundle)
        run["bundle"] = digest
        release = release or bundle_id
        run["release"] = release
    journal = Journal(site, run)
    result = ApplyResult(site.site.name, release=release, resumed_after=journal.previous())
    if result.resumed_after:
        reporter.warn(f"an earlier apply of the same bundle/release stopped after: {', '.join(result.resumed_after)}; "
                      "going on (every layer checks the site again)")
    layers: list[tuple[str, Callable[[], tuple[bool, str]]]] = [("vms", lambda: vms_layer(site, reporter))]
    if engine and bundle is not None and trust is not None:  # Docker Engine from the bundle's packages
        layers.append(("engine", lambda: engine_layer(site, bundle, trust, reporter, trust_new_hosts)))
    layers.append(("swarm", lambda: swarm_layer(site, reporter, trust_new_hosts)))
    if bundle is not None and trust is not None:
        layers.append(("images", lambda: images_layer(site, site_path, bundle, trust, reporter)))
    if release is not None:
        layers.append(("services", lambda: services_layer(site, site_path, str(release), reporter)))
    reporter.task("apply", f"apply site {site.site.name}", total=len(layers))
    for name, step in layers:
        t = time.monotonic()
        reporter.info(f"== {name}")
        changed, summary = step()
        result.layers.append(LayerResult(name, changed, summary, time.monotonic() - t))
        reporter.event("layer.done", layer=name, changed=changed, summary=summary)
        reporter.advance("apply", description=f"apply site {site.site.name}: {name} done")
        journal.mark(name)
    t = time.monotonic()
    result.policy = policy_summary(site, site_path, reporter)
    result.layers.append(LayerResult("policy", False, f"{result.policy['blocking']} blocking finding(s) at or above "
                                     f"{site.policies.fail_on}", time.monotonic() - t))
    reporter.done("apply")
    journal.finish()
    result.seconds = time.monotonic() - t0
    return result
