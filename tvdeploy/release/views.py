"""Read-only views of the releases on a site (`release list|history|status`), from the swarm's
own records and the live services: any operator machine with the site's client certificate
sees the same. The JSON shapes are a contract (issue 12); extra keys are fine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvdeploy.release.records import deployed

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.facts.services import StackFacts


def observe_stack(site: Site) -> StackFacts:
    """One observation (with tasks) that every view here can be given."""
    return _facts(site, with_tasks=True)


def _facts(site: Site, with_tasks: bool) -> StackFacts:
    from tvdeploy.facts.services import manager_client, observe
    from tvdeploy.release.stack_render import stack_values

    client = manager_client(site)
    try:
        return observe(site, client.api, str(stack_values(site).get("stack_name", "trueverit")), with_tasks)
    finally:
        client.close()


def list_releases(site: Site, facts: StackFacts | None = None) -> list[dict[str, Any]]:
    """``[{"release", "sequence", "deployed"}]``, highest sequence first. *facts*: observed
    already (one observation for several views)."""
    facts = facts or _facts(site, with_tasks=False)
    current = deployed(facts.history)
    return [{"release": r.release, "sequence": r.sequence,
             "deployed": current is not None and current.release == r.release,
             "imported": r.time, "manifest_sha256": r.manifest_sha256, "signers": list(r.signers)}
            for r in facts.imports]


def history(site: Site, facts: StackFacts | None = None) -> list[dict[str, Any]]:
    """``[{"release", "sequence", "kind", "outcome", "time", "operator"}]``, newest first."""
    facts = facts or _facts(site, with_tasks=False)
    return [{"release": h.release, "sequence": h.sequence, "kind": h.kind, "outcome": h.outcome, "time": h.time,
             "operator": h.operator, "changed": list(h.changed), "error": h.error,
             "hotfix_service": h.hotfix_service or None, "manifest_sha256": h.manifest_sha256,
             "signers": list(h.signers)}
            for h in facts.history]


def status(site: Site, facts: StackFacts | None = None) -> dict[str, Any]:
    """``{"release", "services": [{"name", "digest", "running_digests", "replicas": {"running",
    "desired"}, "health", "drift"}]}`` — ``digest`` is what the deployed release (with its
    hot-fixes) says, ``running_digests`` what the tasks run."""
    facts = facts or _facts(site, with_tasks=True)
    current = deployed(facts.history)
    recorded = current.services if current else {}
    services = []
    for key in sorted(set(recorded) | set(facts.services)):
        live = facts.services.get(key)
        state = recorded.get(key)
        running = live.running() if live else []
        desired = (live.desired_replicas if live and live.desired_replicas is not None else len(running)) if live else 0
        drift = live is None or state is None or (bool(state.spec_sha256) and state.spec_sha256 != live.spec_sha256) \
            or live.digest != state.digest
        services.append({
            "name": key,
            "digest": state.digest if state else None,
            "running_digests": sorted({t.digest for t in running if t.digest}),
            "replicas": {"running": len(running), "desired": desired},
            "health": health(live, running, desired),
            "drift": bool(drift),
            "service": live.name if live else None,
            "live_digest": live.digest if live else None,
        })
    return {"release": current.release if current else None,
            "sequence": current.sequence if current else None,
            "kind": current.kind if current else None,
            "services": services, "damaged_records": facts.damaged}


def health(live: Any, running: list[Any], desired: int) -> str:
    if live is None:
        return "missing"
    if desired and len(running) >= desired:
        return "healthy"
    return "degraded" if running else "down"
