"""Rule packs: ``policies/<name>.yaml`` choose rules and set their severity and parameters.

    pack: cis-docker            # must match the file name
    description: ...
    rules:
      TVD-105: {}               # the rule's own severity and parameters
      TVD-114: {severity: high, params: {allowed: [443]}}

A site file's ``policies.packs`` names packs shipped with tvdeploy (``policies/``) or gives a
path (relative to the site file) to a pack of its own. When two packs name a rule, the later
pack's severity and parameters win. Every error is one line naming the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.errors import ConfigError
from tvdeploy.policy.model import SEVERITIES, Rule
from tvdeploy.policy.registry import all_rules

PACK_KEYS = {"pack", "description", "rules"}
RULE_KEYS = {"severity", "params"}


@dataclass(frozen=True)
class Selected:
    rule: Rule
    severity: str
    params: dict[str, Any]
    packs: tuple[str, ...] = field(default=())


def pack_path(name: str, base_dir: Path | None) -> Path:
    from tvdeploy.resources import policies_dir

    if "/" in name or name.endswith((".yaml", ".yml")):
        p = Path(name).expanduser()
        return p if p.is_absolute() or base_dir is None else base_dir / p
    return policies_dir() / f"{name}.yaml"


def _fail(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def load_pack(path: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(pack name, {rule id: {severity?, params?}}) from *path*, checked against the registry."""
    from tvdeploy.config.yamlsafe import YamlError, load_yaml_file
    from tvdeploy.errors import InputFileError

    if not path.exists():
        raise InputFileError(f"{path}: policy pack not found (policies.packs names {path.stem!r})")
    try:
        doc = load_yaml_file(path)
    except YamlError as exc:
        raise _fail(path, f"line {exc.line}" if exc.line else "", exc.message) from None
    data = doc.data
    if not isinstance(data, dict):
        raise _fail(path, "", "expected a mapping with pack, description, rules")
    unknown = sorted(set(map(str, data)) - PACK_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (expected one of {', '.join(sorted(PACK_KEYS))})")
    if data.get("pack") != path.stem:
        raise _fail(path, "pack", f"must be {path.stem!r} (the file name)")
    rules = data.get("rules")
    if not isinstance(rules, dict) or not rules:
        raise _fail(path, "rules", "expected a mapping of rule ids")
    known = all_rules()
    out: dict[str, dict[str, Any]] = {}
    for rid, body in rules.items():
        where = f"rules.{rid}"
        if rid not in known:
            raise _fail(path, where, "unknown rule id (tvdeploy policy rules lists them)")
        body = {} if body is None else body
        if not isinstance(body, dict) or set(map(str, body)) - RULE_KEYS:
            raise _fail(path, where, "expected {severity?, params?}")
        if "severity" in body and body["severity"] not in SEVERITIES:
            raise _fail(path, f"{where}.severity", f"must be one of {', '.join(SEVERITIES)}")
        params = body.get("params", {})
        if not isinstance(params, dict):
            raise _fail(path, f"{where}.params", "expected a mapping")
        for key, value in params.items():
            default = known[rid].params.get(key)
            if key not in known[rid].params:
                raise _fail(path, f"{where}.params.{key}", f"unknown parameter of {rid}")
            if type(value) is not type(default):
                raise _fail(path, f"{where}.params.{key}", f"expected a {type(default).__name__}")
        out[str(rid)] = body
    return str(data["pack"]), out


def select(pack_names: list[str], base_dir: Path | None) -> dict[str, Selected]:
    known = all_rules()
    chosen: dict[str, Selected] = {}
    for name in pack_names:
        pack, rules = load_pack(pack_path(name, base_dir))
        for rid, body in rules.items():
            prev = chosen.get(rid)
            base = prev.params if prev else dict(known[rid].params)
            chosen[rid] = Selected(known[rid], body.get("severity", prev.severity if prev else known[rid].severity),
                                   {**base, **body.get("params", {})}, (prev.packs if prev else ()) + (pack,))
    return dict(sorted(chosen.items()))
