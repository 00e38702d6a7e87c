"""Stack keys that swarm ignores (TVD-120): ``docker stack deploy`` drops them (most with a
warning, some silently), so a service that asks for them does not get them. Each is a finding of
its own, "this setting does nothing on a swarm site", never a silent pass."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, PolicyFacts
from tvdeploy.policy.registry import rule
from tvdeploy.policy.rules_stack import _bad, _ok, services

IGNORED_KEYS = {"privileged": "5.5", "pid": "5.16", "ipc": "5.17", "devices": "5.18", "uts": "5.21",
                "cgroup_parent": "5.25", "userns_mode": "5.31", "network_mode": "5.10",
                "security_opt": "5.2/5.3/5.22/5.26"}


@rule("TVD-120", "No setting that swarm ignores", "stack", "medium",
      cis=("5.5", "5.16", "5.17", "5.18", "5.21", "5.25", "5.31"),
      remediation="Remove the key: docker stack deploy drops it (privileged, devices, pid, ipc, "
                  "network_mode, userns_mode, security_opt, cgroup_parent), so it does nothing here.")
def ignored_keys(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts, ("rendered",)):
        keys = sorted(k for k in IGNORED_KEYS if k in svc)
        if keys:
            ev = "; ".join(f"{k}: {svc[k]} (CIS {IGNORED_KEYS[k]})" for k in keys)
            yield _bad(stack, name, "this setting does nothing on a swarm site", ev)
        else:
            yield _ok(stack, name)
