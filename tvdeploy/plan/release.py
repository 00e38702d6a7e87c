"""The release planner (pure): desired service specs + observed stack -> ReleasePlan.

Step kinds it can emit, per service:
- ``create``  — the service does not exist yet;
- ``update``  — its live spec differs from the desired one in a key tvdeploy sets (the
  changes are named: image, env, replicas, limits, networks, secrets, ...), or it drifted (its
  live spec no longer hashes to what the last deploy read back: changed by hand);
- ``remove``  — a service of the stack namespace that the release no longer has (its volumes
  stay: no tvdeploy command removes a volume);
- ``noop``.
Plus the swarm objects to create first (secrets, configs), and ``problems`` that refuse the plan
before anything changes (a digest missing from the site registry, no quorum, a missing network).

Comparison is "desired is a subset of observed": keys the engine adds with defaults do not count
as changes, a falsy desired value equals a missing observed one, and lists compare element by
element (so an extra mount or variable added by hand is a change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tvdeploy.release.stack_render import TIERS

FRIENDLY = (
    ("TaskTemplate.ContainerSpec.Image", "image"),
    ("TaskTemplate.ContainerSpec.Env", "env"),
    ("TaskTemplate.ContainerSpec.Secrets", "secrets"),
    ("TaskTemplate.ContainerSpec.Configs", "configs"),
    ("TaskTemplate.ContainerSpec.Mounts", "mounts"),
    ("TaskTemplate.ContainerSpec", "container"),
    ("TaskTemplate.Resources", "limits"),
    ("TaskTemplate.Networks", "networks"),
    ("TaskTemplate.Placement", "placement"),
    ("TaskTemplate.RestartPolicy", "restart"),
    ("Mode", "replicas"),
    ("EndpointSpec", "ports"),
    ("UpdateConfig", "update_config"),
    ("RollbackConfig", "rollback_config"),
    ("Labels", "labels"),
)


@dataclass(frozen=True)
class ServiceStep:
    service: str  # compose / release name
    action: str  # create | update | remove | noop
    tier: str
    old_digest: str | None
    new_digest: str | None
    changes: tuple[str, ...] = ()
    drift: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "action": self.action, "tier": self.tier, "old_digest": self.old_digest,
                "new_digest": self.new_digest, "changes": list(self.changes), "drift": self.drift}


@dataclass
class ReleasePlan:
    release: str
    sequence: int
    steps: list[ServiceStep]
    create_secrets: list[str] = field(default_factory=list)
    create_configs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return any(s.action != "noop" for s in self.steps) or bool(self.create_secrets or self.create_configs)

    def changed(self) -> list[ServiceStep]:
        return [s for s in self.steps if s.action in ("create", "update")]

    def by_tier(self, tier: str) -> list[ServiceStep]:
        return [s for s in self.changed() if s.tier == tier]

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "sequence": self.sequence, "changes": self.changes,
                "services": [s.to_json() for s in self.steps], "create_secrets": self.create_secrets,
                "create_configs": self.create_configs, "problems": self.problems, "warnings": self.warnings}


@dataclass(frozen=True)
class Observed:
    """What the planner needs of the live stack (built from facts.services.StackFacts)."""

    specs: dict[str, dict[str, Any]]  # service -> live spec, by name
    digests: dict[str, str | None]  # service -> live image digest
    drifted: frozenset[str]  # services whose live spec no longer hashes to the recorded one
    secrets: frozenset[str]
    configs: frozenset[str]
    networks: frozenset[str]


def differences(desired: Any, observed: Any, path: str = "") -> list[str]:
    """Paths where *observed* does not hold *desired* (pure, recursive)."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return [] if not desired and not observed else [path]
        out: list[str] = []
        for key, value in desired.items():
            sub = f"{path}.{key}" if path else key
            if key not in observed:
                if value not in (None, False, 0, "", [], {}):
                    out.append(sub)
                continue
            out.extend(differences(value, observed[key], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return [] if not desired and not observed else [path]
        for i, (d, o) in enumerate(zip(desired, observed, strict=True)):
            if differences(d, o, f"{path}[{i}]"):
                return [path]
        return []
    return [] if desired == observed else [path]


def friendly(paths: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for p in paths:
        name = next((n for prefix, n in FRIENDLY if p.startswith(prefix)), p)
        if name not in out:
            out.append(name)
    return tuple(out)


def digest_of(spec: dict[str, Any] | None) -> str | None:
    image = str(((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))
    return image.rsplit("@", 1)[1] if "@" in image else None


def plan_release(release: str, sequence: int, desired: dict[str, dict[str, Any]], tiers: dict[str, str],
                 observed: Observed, needed_secrets: list[str], needed_configs: list[str],
                 networks: list[str], problems: list[str] | None = None) -> ReleasePlan:
    steps = []
    for name in sorted(desired, key=lambda s: (TIERS.index(tiers[s]), s)):
        spec, live = desired[name], observed.specs.get(name)
        new = digest_of(spec)
        if live is None:
            steps.append(ServiceStep(name, "create", tiers[name], None, new, ("new service",)))
            continue
        changes = friendly(differences(spec, live))
        if set(spec.get("Mode") or {}) != set(live.get("Mode") or {}) and "replicas" not in changes:
            changes = (*changes, "replicas")  # replicated <-> global: an empty desired mode compares as equal
        drift = name in observed.drifted
        if drift and not changes:
            changes = ("changed outside tvdeploy",)
        action = "update" if changes else "noop"
        steps.append(ServiceStep(name, action, tiers[name], observed.digests.get(name), new, changes, drift))
    for name in sorted(set(observed.specs) - set(desired)):
        steps.append(ServiceStep(name, "remove", "", observed.digests.get(name), None, ("not in the release",)))
    plan = ReleasePlan(release, sequence, steps, problems=list(problems or []))
    plan.create_secrets = sorted(set(needed_secrets) - observed.secrets)
    plan.create_configs = sorted(set(needed_configs) - observed.configs)
    for net in networks:
        if net not in observed.networks:
            plan.problems.append(f"network {net} does not exist; run tvdeploy swarm bootstrap (it creates the "
                                 "tier networks)")
    for name, spec in desired.items():
        if digest_of(spec) is None:
            plan.problems.append(f"service {name}: image {spec['TaskTemplate']['ContainerSpec']['Image']} is not "
                                 "pinned by digest")
    return plan
