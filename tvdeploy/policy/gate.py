"""The policy gate: what `release deploy`, `release hotfix` and `bundle import` call first.

    from tvdeploy.policy import gate

    result = gate.check_stack(site, site_path, compose, now)       # the rendered stack (a dict)
    result = gate.check_bundle(site, site_path, bundle_path, now)  # images + signatures, offline
    result = gate.evaluate(site, site_path, facts, targets, now)   # any PolicyFacts
    if result.blocking:                  # unwaived findings at or above policies.fail_on
        raise RefusedError(result.message())   # names each rule and its objects

*site* is the loaded ``Site``; *site_path* its file (packs given as paths are relative to it);
*compose* the compose-format mapping the stack renderer produced (``{"version": "3.8",
"services": ..., "networks": ...}``); *now* a timezone-aware datetime (waiver expiry; defaults to
the current time). The packs are ``policies.packs``, the waivers ``policies.waivers``, signed by
``policies.approvers``. ``result.to_dict()`` is the ``policy check --json`` document and
``result.waiver_problems`` lists waivers that did not count. Nothing here changes the site; only
``check_bundle`` reads a file (the bundle).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tvdeploy.policy import engine, packs, waivers
from tvdeploy.policy.engine import PolicyResult
from tvdeploy.policy.model import TARGETS, PolicyFacts, StackFacts

GATE_TARGETS = ("stack", "image", "bundle")


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def evaluate(site: Any, site_path: Path, facts: PolicyFacts, targets: tuple[str, ...] = TARGETS,
             now: datetime | None = None) -> PolicyResult:
    current = _now(now)
    selected = packs.select(list(site.policies.packs), Path(site_path).resolve().parent)
    good, problems = waivers.load([Path(p) for p in site.policies.waivers], waivers.approver_keys(site), current)
    return engine.run(selected, facts, targets, good, site.policies.fail_on, problems)


def check_stack(site: Any, site_path: Path, compose: dict[str, Any], now: datetime | None = None,
                source: str = "") -> PolicyResult:
    """The stack rules over the rendered stack, before anything is sent to the swarm."""
    template = source or str(site.stack.template or site_path)
    facts = PolicyFacts(stacks=(StackFacts(compose, "rendered", template),))
    return evaluate(site, site_path, facts, ("stack",), now)


def check_bundle(site: Any, site_path: Path, bundle_path: Path, now: datetime | None = None,
                 trust_root: Path | None = None, fileobj: Any = None) -> PolicyResult:
    """The image and bundle rules over *bundle_path* (or its bytes in *fileobj*: a chunk folder),
    against *trust_root* (default: the site's)."""
    from tvdeploy.facts.policy_bundle import gather

    current = _now(now)
    root = Path(trust_root) if trust_root else (Path(site.trust.root) if site.trust.root else None)
    bundle, images = gather(Path(bundle_path), root, current, fileobj=fileobj)
    return evaluate(site, site_path, PolicyFacts(images=images, bundle=bundle), ("image", "bundle"), current)
