"""The rule registry: every built-in rule, by id (``TVD-NNN``).

Rule modules register with ``@rule(...)`` when imported; ``all_rules()`` imports them all.
Ids by target: TVD-0xx bundle, 1xx stack, 2xx image, 3xx engine, 4xx host, 5xx swarm.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from tvdeploy.policy.model import SEVERITIES, TARGETS, CheckFn, Rule

RULE_ID = re.compile(r"^TVD-[0-9]{3}$")
_RULES: dict[str, Rule] = {}
MODULES = ("rules_stack", "rules_ignored", "rules_trueverit", "rules_image", "rules_engine",
           "rules_daemon", "rules_host", "rules_swarm")
DEFAULT_NEEDS = {"stack": ("stacks",), "image": ("images",), "bundle": ("bundle",),
                 "engine": ("engines",), "host": ("hosts",), "swarm": ("swarm",)}


def register(r: Rule) -> Rule:
    if not RULE_ID.match(r.id) or r.id in _RULES:
        raise ValueError(f"rule id {r.id!r} is malformed or registered twice")
    if r.target not in TARGETS or r.severity not in SEVERITIES:
        raise ValueError(f"rule {r.id}: unknown target or severity")
    _RULES[r.id] = r
    return r


def rule(id: str, title: str, target: str, severity: str, *, cis: tuple[str, ...] = (),
         remediation: str, params: Mapping[str, Any] | None = None,
         needs: tuple[str, ...] | None = None) -> Callable[[CheckFn], CheckFn]:
    def wrap(fn: CheckFn) -> CheckFn:
        register(Rule(id, title, target, severity, cis, remediation, fn, dict(params or {}),
                      needs if needs is not None else DEFAULT_NEEDS[target]))
        return fn
    return wrap


def all_rules() -> dict[str, Rule]:
    for name in MODULES:
        importlib.import_module(f"tvdeploy.policy.{name}")
    return dict(sorted(_RULES.items()))
