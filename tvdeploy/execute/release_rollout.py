"""One rollout of a prepared plan: wave by wave (tier, then dependencies), each wave converged
and healthy before the next, swarm's monitor windows over, the data path checked; on any failure
every service this rollout changed goes back to its previous spec; the outcome is written to the
swarm's history and the audit log. A Ctrl-C stops at once (no undo: the operator asked to stop)
and is recorded as a failed attempt; the next run finishes or rolls back from what it finds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed, TvdeployError
from tvdeploy.execute import release_apply as A
from tvdeploy.execute.release_wait import Watch, check_data_path, wait_converged
from tvdeploy.facts.services import observe
from tvdeploy.release.records import HistoryRecord, ServiceState

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.execute.release_deploy import Prepared
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)


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
    service: str | None = None  # hot-fix

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "kind": self.kind, "outcome": self.outcome,
                "changed": self.changed, "removed": self.removed, "seconds": round(self.seconds, 2),
                "service": self.service, "plan": self.plan}


class Rollout:
    def __init__(self, site: Site, p: Prepared, reporter: Reporter) -> None:
        self.site, self.p, self.reporter, self.kind = site, p, reporter, p.target.kind
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
        except KeyboardInterrupt:
            self.finish("failed", "interrupted by the operator (Ctrl-C); no undo was made")
            self.audit(f"release.{self.kind}", outcome="failure", error="interrupted")
            raise
        except Exception as exc:
            self.fail(exc)
            if isinstance(exc, TvdeployError):
                raise
            # The manager's API went away mid-rollout (a requests/docker error, not a gate failure).
            raise ConnectionFailed(f"site {self.site.site.name}: the swarm manager stopped answering during the "
                                   f"{self.kind} ({type(exc).__name__}: {str(exc)[:160]}); the site is left as it "
                                   "is: run the command again to finish or roll back") from None
        removed = self.remove_dropped()
        self.finish("success", "")
        self.audit(f"release.{self.kind}", extra=[{"type": "service", "name": c.key, "digest": c.image}
                                                  for c in self.changed])
        return DeployResult(self.p.release.release, self.p.release.sequence, self.kind, "success",
                            [c.key for c in self.changed], removed, time.monotonic() - self.t0,
                            self.p.plan.to_json(), self.p.target.service)

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
        """Undo, wait for the undo, record — each step best effort: when the manager itself went
        away none of them can reach it, and the next run starts from what it then finds."""
        reason = exc.message if isinstance(exc, TvdeployError) else f"{type(exc).__name__}: {str(exc)[:300]}"
        undone = list(self.changed)
        problems: list[str] = []
        if undone:
            self.reporter.warn(f"rollout failed ({reason[:200]}); rolling back {', '.join(c.key for c in undone)}")
            try:
                problems = A.undo(self.api, undone)
                restored = [Watch(c.key, c.service_id, c.previous_image or "") for c in undone if c.previous]
                wait_converged(self.site, self.api, restored, self.p.rendered.gate.timeout_seconds, self.reporter,
                               completed=True)
            except TvdeployError as again:
                problems.append(f"rollback not converged: {again.message}")
            except Exception as again:  # noqa: BLE001 - the manager is gone: nothing more to do here
                problems.append(f"rollback interrupted: {type(again).__name__}")
        outcome = "rolled-back" if undone and not problems else "failed"
        try:
            self.finish(outcome, reason + (f" (rollback problems: {'; '.join(problems)})" if problems else ""))
        except Exception as again:  # noqa: BLE001 - the history lives in the swarm: unreachable now
            self.reporter.warn(f"the failed attempt could not be recorded in the swarm ({type(again).__name__})")
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
            hotfix_service=self.p.target.service or "",
            hotfix_release=(self.p.target.release or "") if self.kind == "hotfix" else "",
        )
        write_history(self.api, record)
