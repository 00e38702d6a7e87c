"""`release plan|deploy`: the Trueverit stack of an imported release, by digest, tier by tier,
health-gated, every change undone when the gate fails, every step audited, the outcome
recorded in the swarm (tvdeploy.release.records).

Order: data tier, then apps, then fronts — each converged and healthy before the next starts;
then the data path check; then services the release no longer has are removed (volumes stay).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.execute import release_apply as A
from tvdeploy.execute.release_wait import GateFailed, Watch, check_data_path, wait_converged
from tvdeploy.facts.services import StackFacts, manager_client, observe
from tvdeploy.plan.release import Observed, ReleasePlan, plan_release
from tvdeploy.release.records import HistoryRecord, ImportRecord, ServiceState, deployed
from tvdeploy.release.stack_render import RenderedStack

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    api: Any
    facts: StackFacts
    release: ImportRecord
    rendered: RenderedStack
    specs: dict[str, dict[str, Any]]
    plan: ReleasePlan


@dataclass
class DeployResult:
    release: str
    sequence: int
    kind: str
    outcome: str
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "kind": self.kind, "outcome": self.outcome,
                "changed": self.changed, "removed": self.removed, "seconds": round(self.seconds, 2),
                "plan": self.plan}


def find_release(site: Site, facts: StackFacts, release_id: str) -> ImportRecord:
    for rec in facts.imports:
        if rec.release == release_id:
            return rec
    known = ", ".join(r.release for r in facts.imports[:8]) or "none"
    raise RefusedError(f"release {release_id} is not imported on site {site.site.name} (imported: {known}); "
                       "import its bundle first (tvdeploy bundle import)")


def registry_host(site: Site) -> str:
    from tvdeploy.release.registry_address import endpoint

    if site.registry.mode != "site-registry":
        raise RefusedError(f"site {site.site.name}: release deploy needs registry.mode site-registry "
                           "(node-load rollouts are not supported yet)")
    return endpoint(site).host


def observed_view(facts: StackFacts) -> Observed:
    last = deployed(facts.history)
    recorded = {k: v.spec_sha256 for k, v in (last.services.items() if last else [])}
    drifted = frozenset(k for k, f in facts.services.items()
                        if recorded.get(k) and recorded[k] != f.spec_sha256)
    return Observed(
        specs={k: f.by_name for k, f in facts.services.items()},
        digests={k: f.digest for k, f in facts.services.items()},
        drifted=drifted, secrets=frozenset(facts.secrets), configs=frozenset(facts.configs),
        networks=frozenset(facts.networks),
    )


def prepare(site: Site, release_id: str, check_registry: bool = True) -> Prepared:
    """Facts, render, plan; the caller closes ``api`` (plan_release never touches anything)."""
    from tvdeploy.release.service_spec import build_specs
    from tvdeploy.release.stack_render import render, stack_values

    host = registry_host(site)
    client = manager_client(site)
    api = client.api
    try:
        stack = str(stack_values(site).get("stack_name", "trueverit"))
        facts = observe(site, api, stack, with_tasks=False)
        release = find_release(site, facts, release_id)
        rendered = render(site, release, host)
        specs = build_specs(rendered.model, rendered.stack_name)
        problems = swarm_problems(facts, site)
        if check_registry:
            problems += registry_problems(site, specs)
        nets = sorted({n["Target"] for s in specs.values() for n in s["TaskTemplate"]["Networks"]})
        plan = plan_release(release.release, release.sequence, specs, rendered.tiers, observed_view(facts),
                            list(rendered.secrets), [d.name for d in rendered.model.configs.values() if d.name],
                            nets, problems)
    except BaseException:
        client.close()
        raise
    return Prepared(api, facts, release, rendered, specs, plan)


def swarm_problems(facts: StackFacts, site: Site) -> list[str]:
    managers = [n for n in facts.nodes.values() if n["role"] == "manager"]
    ready = [n for n in managers if n["state"] == "ready"]
    if len(ready) < len(managers) // 2 + 1:
        return [f"swarm has no quorum: {len(ready)} of {len(managers)} managers ready"]
    return []


def not_ready(facts: StackFacts) -> list[str]:
    return sorted(n["name"] for n in facts.nodes.values() if n["state"] != "ready" or n["availability"] != "active")


def registry_problems(site: Site, specs: dict[str, dict[str, Any]]) -> list[str]:
    """Every digest must be in the site registry before anything changes."""
    from tvdeploy.connectors.registry import Registry
    from tvdeploy.pki.ca import pki_paths
    from tvdeploy.release.registry_address import endpoint

    ep = endpoint(site)
    missing = []
    with Registry(ep.address, ep.port, pki_paths(site).cert) as reg:
        for name, spec in sorted(specs.items()):
            image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            ref = image.removeprefix(f"{ep.host}/")
            if "@" not in ref:
                continue
            repo, digest = ref.split("@", 1)
            if reg.manifest_digest(repo, digest) is None:
                missing.append(f"{name} ({repo}@{digest[:19]})")
    return [f"not in the site registry {ep.host}: {', '.join(missing)}"] if missing else []


def plan(site: Site, release_id: str) -> tuple[ReleasePlan, list[str]]:
    p = prepare(site, release_id)
    try:
        return p.plan, not_ready(p.facts)
    finally:
        p.api.close()


def policy_gate(site: Site, site_path: Path, p: Prepared, kind: str) -> None:
    """The stack rules over the rendered stack: refused before anything changes, naming the rules."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.policy.gate import check_stack

    result = check_stack(site, site_path, p.rendered.compose, source=str(p.rendered.template))
    if result.blocking:
        message = f"policy gate: {result.message()}"
        record(site, f"release.{kind}", objects=[{"type": "release", "name": p.release.release,
                                                  "sequence": str(p.release.sequence)}],
               outcome="refused", error=message[:500])
        raise RefusedError(message)


def deploy(site: Site, site_path: Path, release_id: str, reporter: Reporter, kind: str = "deploy") -> DeployResult:
    from tvdeploy.audit.recorder import prepare as unlock_operator_key

    unlock_operator_key()
    p = prepare(site, release_id)
    try:
        if p.plan.problems:
            raise RefusedError(p.plan.problems[0], details=p.plan.problems[1:])
        policy_gate(site, site_path, p, kind)
        for name in not_ready(p.facts):
            reporter.warn(f"node {name} is not ready/active: its tasks go elsewhere")
        if not p.plan.changes:
            return DeployResult(p.release.release, p.release.sequence, kind, "success", plan=p.plan.to_json())
        return Rollout(site, p, reporter, kind).run()
    finally:
        p.api.close()


class Rollout:
    def __init__(self, site: Site, p: Prepared, reporter: Reporter, kind: str) -> None:
        self.site, self.p, self.reporter, self.kind = site, p, reporter, kind
        self.api = p.api
        self.changed: list[A.Changed] = []
        self.watches: list[Watch] = []
        self.t0 = time.monotonic()

    def audit(self, event: str, outcome: str = "success", error: str | None = None,
              extra: list[dict[str, str]] | None = None) -> None:
        from tvdeploy.audit.recorder import record

        rel = self.p.release
        objects = [{"type": "release", "name": rel.release, "sequence": str(rel.sequence),
                    "digest": f"sha256:{rel.manifest_sha256}"}, *(extra or [])]
        record(self.site, event, objects=objects, outcome=outcome, error=error)

    def run(self) -> DeployResult:
        plan = self.p.plan
        self.audit(f"release.{self.kind}.start", extra=[
            {"type": "service", "name": s.service, "digest": s.new_digest or "", "action": s.action}
            for s in plan.steps if s.action != "noop"])
        try:
            A.create_objects(self.api, self.p.rendered, plan.create_secrets, plan.create_configs)
            ids = self.object_ids()
            created = {s.service for s in self.p.plan.changed() if s.action == "create"}
            for wave in self.p.rendered.waves([s.service for s in self.p.plan.changed()], created):
                self.roll_wave(wave, ids)
            # Each wave only had to run healthy; swarm's monitor window of every update must end
            # without a failure too before the release counts as deployed.
            wait_converged(self.site, self.api, self.watches, self.p.rendered.gate.timeout_seconds, self.reporter,
                           completed=True)
            gate = self.p.rendered.gate
            if gate.data_path_service and gate.data_path_url and gate.data_path_service in self.service_ids():
                self.reporter.info(f"data path: {gate.data_path_url} from {gate.data_path_service}")
                check_data_path(self.site, self.api, self.service_ids()[gate.data_path_service],
                                gate.data_path_service, gate.data_path_url)
        except (GateFailed, TvdeployError, Exception) as exc:
            self.fail(exc)
            raise
        removed = self.remove_dropped()
        self.finish("success", "")
        self.audit(f"release.{self.kind}", extra=[{"type": "service", "name": c.key, "digest": c.image}
                                                  for c in self.changed])
        return DeployResult(self.p.release.release, self.p.release.sequence, self.kind, "success",
                            [c.key for c in self.changed], removed, time.monotonic() - self.t0,
                            self.p.plan.to_json())

    def object_ids(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        nets = {n["Name"]: n["Id"] for n in self.api.networks()}
        secrets = {s["Spec"]["Name"]: s["ID"] for s in self.api.secrets()}
        configs = {c["Spec"]["Name"]: c["ID"] for c in self.api.configs()}
        return nets, secrets, configs

    def service_ids(self) -> dict[str, str]:
        from tvdeploy.release.service_spec import NAMESPACE, SERVICE_LABEL

        out = {}
        for svc in self.api.services(filters={"label": f"{NAMESPACE}={self.p.rendered.stack_name}"}):
            key = (svc["Spec"].get("Labels") or {}).get(SERVICE_LABEL)
            if key:
                out[key] = svc["ID"]
        return out

    def roll_wave(self, wave: list[str], ids: tuple[dict[str, str], dict[str, str], dict[str, str]]) -> None:
        steps = [s for s in self.p.plan.changed() if s.service in wave]
        tier = steps[0].tier
        self.reporter.info(f"tier {tier}: {', '.join(s.service for s in steps)}")
        watches = []
        for step in steps:
            spec = A.sendable(self.p.specs[step.service], *ids)
            live = self.p.facts.services.get(step.service)
            image = A.image_of(spec) or ""
            if live is None:
                sid = A.create_service(self.api, spec)
                self.changed.append(A.Changed(step.service, sid, image, None, None))
            else:
                A.update_service(self.api, live.id, spec)
                self.changed.append(A.Changed(step.service, live.id, image, live.spec, live.image))
            self.reporter.event("service.rollout", service=step.service, action=step.action,
                                digest=step.new_digest, tier=tier)
            watches.append(Watch(step.service, self.changed[-1].service_id, image))
        wait_converged(self.site, self.api, watches, self.p.rendered.gate.timeout_seconds, self.reporter)
        self.watches += [Watch(w.key, w.service_id, w.image) for w in watches]

    def remove_dropped(self) -> list[str]:
        removed = []
        for step in self.p.plan.steps:
            live = self.p.facts.services.get(step.service)
            if step.action == "remove" and live is not None:
                A.remove_service(self.api, live.id)
                removed.append(step.service)
        return removed

    def fail(self, exc: BaseException) -> None:
        reason = exc.message if isinstance(exc, TvdeployError) else f"{type(exc).__name__}: {exc}"
        undone = [c for c in self.changed]
        problems = A.undo(self.api, undone) if undone else []
        if undone:
            self.reporter.warn(f"gate failed; rolling back {', '.join(c.key for c in undone)}")
            restored = [Watch(c.key, c.service_id, c.previous_image or "") for c in undone if c.previous is not None]
            try:
                wait_converged(self.site, self.api, restored, self.p.rendered.gate.timeout_seconds, self.reporter,
                               completed=True)
            except TvdeployError as again:
                problems.append(f"rollback not converged: {again.message}")
        outcome = "rolled-back" if undone and not problems else "failed"
        self.finish(outcome, reason + (f" (rollback problems: {'; '.join(problems)})" if problems else ""))
        self.audit(f"release.{self.kind}", outcome="failure", error=reason[:500],
                   extra=[{"type": "service", "name": c.key, "digest": c.image, "undone": "yes"} for c in undone])

    def finish(self, outcome: str, error: str) -> None:
        """The history record, with the state the services are in now (read back)."""
        from tvdeploy.audit.recorder import signing_key
        from tvdeploy.execute.release_records import write_history

        facts = observe(self.site, self.api, self.p.rendered.stack_name, with_tasks=False)
        services = {k: ServiceState(f.digest or "", f.spec_sha256) for k, f in facts.services.items() if f.digest}
        rel = self.p.release
        record = HistoryRecord(
            release=rel.release, sequence=rel.sequence, kind=self.kind, outcome=outcome,
            time=datetime.now(UTC).isoformat(timespec="microseconds"), operator=signing_key()[1],
            services=services, manifest_sha256=rel.manifest_sha256, signers=rel.signers, error=error[:2000],
            changed=tuple(c.key for c in self.changed),
        )
        write_history(self.api, record)
