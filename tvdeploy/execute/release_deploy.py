"""`release plan|deploy|hotfix|rollback`: prepare (facts, target, render, plan, checks), then
under the deploy lock run the policy gate and the rollout (tvdeploy.execute.release_rollout).

Order of a rollout: data tier, then apps, then fronts — each converged and healthy before the
next; then the data path check; then services the release no longer has are removed (volumes
stay). Nothing is changed before every check passed: digests in the site registry, quorum,
networks, secrets, the policy gate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError
from tvdeploy.execute.release_rollout import DeployResult, Rollout
from tvdeploy.execute.release_targets import Target, resolve
from tvdeploy.facts.services import StackFacts, manager_client, observe
from tvdeploy.plan.release import Observed, ReleasePlan, ServiceStep, plan_release
from tvdeploy.release.records import ImportRecord, deployed
from tvdeploy.release.stack_render import RenderedStack

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

__all__ = ["DeployResult", "Prepared", "Target", "plan", "prepare", "run"]


@dataclass
class Prepared:
    api: Any
    facts: StackFacts
    release: ImportRecord
    rendered: RenderedStack
    specs: dict[str, dict[str, Any]]
    plan: ReleasePlan
    target: Target
    not_ready: list[str] = field(default_factory=list)


def registry_host(site: Site) -> str:
    from tvdeploy.release.registry_address import endpoint

    if site.registry.mode != "site-registry":
        raise RefusedError(f"site {site.site.name}: release commands need registry.mode site-registry "
                           "(node-load rollouts are not supported yet)")
    return endpoint(site).host


def observed_view(facts: StackFacts) -> Observed:
    last = deployed(facts.history)
    recorded = {k: v.spec_sha256 for k, v in (last.services.items() if last else [])}
    drifted = frozenset(k for k, f in facts.services.items() if recorded.get(k) and recorded[k] != f.spec_sha256)
    return Observed(
        specs={k: f.by_name for k, f in facts.services.items()},
        digests={k: f.digest for k, f in facts.services.items()},
        drifted=drifted, secrets=frozenset(facts.secrets), configs=frozenset(facts.configs),
        networks=frozenset(facts.networks),
    )


def prepare(site: Site, target: Target, check_registry: bool = True) -> Prepared:
    """Facts, render, plan; changes nothing. The caller closes ``api``."""
    from tvdeploy.release.service_spec import build_specs
    from tvdeploy.release.stack_render import render, stack_values

    host = registry_host(site)
    client = manager_client(site)
    api = client.api
    try:
        stack = str(stack_values(site).get("stack_name", "trueverit"))
        facts = observe(site, api, stack, with_tasks=False)
        release = resolve(site.site.name, facts, target)
        rendered = render(site, release, host)
        specs = build_specs(rendered.model, rendered.stack_name)
        problems = swarm_problems(facts)
        if check_registry:
            only = {str(target.service): specs[str(target.service)]} if target.kind == "hotfix" else specs
            problems += registry_problems(site, only)
        nets = sorted({n["Target"] for s in specs.values() for n in s["TaskTemplate"]["Networks"]})
        p = plan_release(release.release, release.sequence, specs, rendered.tiers, observed_view(facts),
                         list(rendered.secrets), [d.name for d in rendered.model.configs.values() if d.name],
                         nets, problems)
        if target.kind == "hotfix":
            p = only_service(p, str(target.service), specs[str(target.service)])
    except BaseException:
        client.close()
        raise
    return Prepared(api, facts, release, rendered, specs, p, target, not_ready(facts))


def only_service(p: ReleasePlan, service: str, spec: dict[str, Any]) -> ReleasePlan:
    """A hot-fix touches SERVICE and the swarm objects its spec names, nothing else."""
    cs = spec["TaskTemplate"]["ContainerSpec"]
    names = {r["SecretName"] for r in cs.get("Secrets") or []} | {r["ConfigName"] for r in cs.get("Configs") or []}
    steps = [s if s.service == service else ServiceStep(s.service, "noop", s.tier, s.old_digest, s.old_digest)
             for s in p.steps if s.action != "remove"]
    return ReleasePlan(p.release, p.sequence, steps, [n for n in p.create_secrets if n in names],
                       [n for n in p.create_configs if n in names], p.problems, p.warnings)


def swarm_problems(facts: StackFacts) -> list[str]:
    managers = [n for n in facts.nodes.values() if n["role"] == "manager"]
    ready = [n for n in managers if n["state"] == "ready"]
    if len(ready) < len(managers) // 2 + 1:
        return [f"swarm has no quorum: {len(ready)} of {len(managers)} managers ready"]
    return []


def not_ready(facts: StackFacts) -> list[str]:
    return sorted(n["name"] for n in facts.nodes.values() if n["state"] != "ready" or n["availability"] != "active")


def registry_problems(site: Site, specs: dict[str, dict[str, Any]]) -> list[str]:
    """Every digest must be in the site registry before anything changes (each missing one named)."""
    from tvdeploy.execute.site_registry import open_registry
    from tvdeploy.release.registry_address import endpoint

    host = endpoint(site).host
    missing = []
    with open_registry(site) as reg:
        for name, spec in sorted(specs.items()):
            ref = spec["TaskTemplate"]["ContainerSpec"]["Image"].removeprefix(f"{host}/")
            if "@" not in ref:
                continue
            repo, digest = ref.split("@", 1)
            if reg.manifest_digest(repo, digest) is None:
                missing.append(f"{name} ({repo}@{digest[:19]})")
    return [f"not in the site registry {host}: {', '.join(missing)}"] if missing else []


def plan(site: Site, target: Target) -> Prepared:
    p = prepare(site, target)
    p.api.close()
    return p


def policy_gate(site: Site, site_path: Path, p: Prepared) -> None:
    """The stack rules over the rendered stack: refused before anything changes, naming the rules."""
    from tvdeploy.audit.recorder import record
    from tvdeploy.policy.gate import check_stack

    result = check_stack(site, site_path, p.rendered.compose, source=str(p.rendered.template))
    if result.blocking:
        message = result.message()
        record(site, f"release.{p.target.kind}", objects=[{"type": "release", "name": p.release.release,
                                                           "sequence": str(p.release.sequence)}],
               outcome="refused", error=message[:500])
        raise RefusedError(message)


def run(site: Site, site_path: Path, target: Target, reporter: Reporter) -> DeployResult:
    """Check everything, then take the deploy lock and roll out."""
    from tvdeploy.audit.recorder import prepare as unlock_operator_key
    from tvdeploy.execute.deploy_lock import hold

    unlock_operator_key()
    p = prepare(site, target)
    try:
        policy_gate(site, site_path, p)  # first: it names every rule a bad stack breaks
        if p.plan.problems:
            raise RefusedError(p.plan.problems[0], details=p.plan.problems[1:])
        with hold(site, target.command, reporter):
            # Read again under the lock: another operator may have changed the site meanwhile.
            p.api.close()
            p = prepare(site, target, check_registry=False)
            for name in p.not_ready:
                reporter.warn(f"node {name} is not ready/active: its tasks go elsewhere")
            if not p.plan.changes:
                return DeployResult(p.release.release, p.release.sequence, target.kind, "success",
                                    plan=p.plan.to_json(), service=target.service)
            return Rollout(site, p, reporter).run()
    finally:
        p.api.close()
