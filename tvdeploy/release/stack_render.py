"""Render the Trueverit stack for a release: jinja2 template + values + release digests ->
a validated compose document (tvdeploy.release.stack_model), pure but for reading the template
and resolving the site's secret references.

The context the template gets is computed here, so a site's own copy of the template stays a
layout and cannot get the security decisions wrong by accident: every image is
``<site registry>/<repository>@sha256:<digest>`` from the release (never a tag), a service joins
only the tier networks of the services it talks to, stateful services are pinned to the node
that holds their volume, and secret and config names carry a hash of their content (swarm
objects are immutable: new content, new name).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConfigError
from tvdeploy.release.records import ImportRecord

if TYPE_CHECKING:
    from tvdeploy.config.secrets import Secret
    from tvdeploy.config.site import Site
    from tvdeploy.release.stack_model import Stack

TIERS = ("data", "app", "front")  # deploy order: what others depend on first
_CONFIG_KEY = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


@dataclass(frozen=True)
class Gate:
    timeout_seconds: float
    data_path_service: str | None
    data_path_url: str | None


@dataclass
class RenderedStack:
    release: ImportRecord
    stack_name: str
    text: str  # the compose file as rendered (secret values never appear in it)
    compose: dict[str, Any]  # the same, parsed
    model: Stack
    template: Path
    tiers: dict[str, str]  # service -> tier
    gate: Gate
    depends: dict[str, list[str]] = field(default_factory=dict)  # service -> the services it talks to
    secrets: dict[str, Secret] = field(default_factory=dict, repr=False)  # swarm secret name -> value
    unused: list[str] = field(default_factory=list)  # release images no stack service uses

    def services_in_tier(self, tier: str) -> list[str]:
        return [s for s, t in self.tiers.items() if t == tier]

    def waves(self, services: list[str], created: set[str]) -> list[list[str]]:
        """*services* in deploy order: tier by tier, and within a tier a NEW service after the new
        services it talks to (its health check needs them; an updated service's dependencies
        already run), each wave started together."""
        return deploy_waves(services, self.tiers, self.depends, created)


def deploy_waves(services: list[str], tiers: dict[str, str], depends: dict[str, list[str]],
                 created: set[str]) -> list[list[str]]:
    """Waves of *services* (pure): by tier (data, app, front), then by dependency between created
    services within the tier; a dependency cycle is deployed together rather than refused."""
    waves: list[list[str]] = []
    for tier in TIERS:
        todo = sorted(s for s in services if tiers[s] == tier)
        while todo:
            ready = [s for s in todo
                     if s not in created or not any(d in todo and d != s and d in created for d in depends.get(s, []))]
            wave = ready or todo
            waves.append(wave)
            todo = [s for s in todo if s not in wave]
    return waves


def template_dir(site: Site) -> Path:
    from tvdeploy.resources import templates_dir

    if site.stack.template is not None:
        return Path(site.stack.template).parent
    return templates_dir() / "trueverit"


def template_file(site: Site) -> Path:
    return Path(site.stack.template) if site.stack.template is not None else template_dir(site) / "stack.yml.j2"


def merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else in *override* replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def stack_values(site: Site) -> dict[str, Any]:
    from tvdeploy.config.load import load_yaml_mapping
    from tvdeploy.resources import templates_dir

    defaults = load_yaml_mapping(templates_dir() / "trueverit" / "defaults.yaml", "of stack values").data
    own = template_dir(site) / "defaults.yaml"
    if site.stack.template is not None and own.is_file():
        defaults = merge(defaults, load_yaml_mapping(own, "of stack values").data)
    return dict(merge(defaults, site.stack.values))


def secret_name(stack: str, site_name: str, key: str, value: Secret) -> str:
    """``<stack>_<key>_<tag>``: the tag changes with the value, and it is a salted scrypt so a
    weak secret cannot be guessed from a name that the swarm shows to anyone with API access."""
    tag = hashlib.scrypt(value.reveal().encode(), salt=f"tvdeploy:{site_name}:{key}".encode(),
                         n=2**14, r=8, p=1, dklen=16).hex()[:12]
    return f"{stack}_{key}_{tag}"


def render(site: Site, release: ImportRecord, registry_host: str) -> RenderedStack:
    """Render, parse and validate the stack of *release*; errors name the key or the template line."""
    from tvdeploy.config.secrets import resolve_secret

    v = stack_values(site)
    stack = str(v.get("stack_name", "trueverit"))
    secrets: dict[str, Secret] = {}
    secret_names: dict[str, str] = {}
    for key, ref in site.stack.secrets.items():
        value = resolve_secret(ref, f"stack.secrets.{key}")
        name = secret_name(stack, site.site.name, key, value)
        secrets[name] = value
        secret_names[key] = name
    ctx = build_context(site, release, registry_host, v, secret_names)
    text = render_template(template_file(site), ctx)
    compose, model = parse_stack(text, template_file(site))
    gate = v.get("gate") or {}
    path = gate.get("data_path") or {}
    return RenderedStack(
        release=release, stack_name=stack, text=text, compose=compose, model=model, template=template_file(site),
        tiers={s["name"]: s["tier"] for s in ctx["services"]},
        depends={s["name"]: list(s["talks_to"]) for s in ctx["services"]},
        gate=Gate(float(gate.get("timeout_seconds", 150)), path.get("service"), path.get("url")),
        secrets={n: secrets[n] for n in secret_names.values()},
        unused=sorted(set(release.images) - {s["name"] for s in ctx["services"]}),
    )


def build_context(site: Site, release: ImportRecord, registry_host: str, v: dict[str, Any],
                  secret_names: dict[str, str]) -> dict[str, Any]:
    """The template's inputs (pure): one entry per service, plus the top-level objects."""
    services = v.get("services") or {}
    if not isinstance(services, dict) or not services:
        raise ConfigError("stack.values.services: expected a mapping of services")
    nets = v["networks"]
    uid, _, gid = str(v["user"]).partition(":")
    out, configs, volumes, used_nets = [], [], [], set()
    for name, raw in services.items():
        _service_values(name, raw, services)  # all of them first: a service names others
    for name, svc in services.items():
        if name not in release.images:
            raise ConfigError(f"release {release.release}: no image for service {name} "
                              f"(the stack template's services.{name})")
        tier_keys = {svc["tier"]} | {services[t]["tier"] for t in svc.get("talks_to") or []}
        networks = sorted(tier_keys, key=TIERS.index)
        used_nets.update(networks)
        secrets = []
        for key in [*v["tier_secrets"].get(svc["tier"], []), *svc.get("secrets", [])]:
            if key not in secret_names:
                raise ConfigError(f"stack.values.services.{name}: secret {key!r} is not in the site "
                                  "file's stack.secrets")
            secrets.append({"source": key, "target": key, "uid": uid, "gid": gid or uid,
                            "mode": int(str(v.get("secret_mode", "0400")), 8)})
        config = _config_text(name, svc, bool(secrets))
        cfg_name = f"{v['stack_name']}_{name}_{hashlib.sha256(config.encode()).hexdigest()[:12]}"
        configs.append({"key": f"{name}_config", "name": cfg_name, "content": config})
        constraints = [f"node.labels.zone == {svc['zone']}"]
        volume = None
        if svc.get("volume"):
            constraints.append(f"node.hostname == {_data_node(site, name, svc)}")
            volume = {"name": f"{name}_data", "target": svc["volume"]}
            volumes.append(volume["name"])
        ports = []
        if name in (v.get("publish") or {}):
            ports.append({"target": int(v["port"]), "published": int(v["publish"][name]),
                          "mode": site.swarm.publish_mode})
        out.append({
            "name": name, "tier": svc["tier"], "networks": networks, "talks_to": list(svc.get("talks_to") or []),
            "image": f"{registry_host}/{release.repository(name)}@{release.images[name]}",
            "replicas": 1 if volume else int(svc.get("replicas", v["replicas"])),
            "global": bool(ports) and site.swarm.publish_mode == "host",
            # A new task cannot start beside the old one when it needs the old one's volume or
            # its host-mode port: stop first. Everything else starts first (no gap in service).
            "order": "stop-first" if volume or (ports and site.swarm.publish_mode == "host") else "start-first",
            "constraints": constraints, "volume": volume, "ports": ports, "secrets": secrets,
            "config": {"source": f"{name}_config", "uid": uid, "gid": gid or uid},
        })
    out.sort(key=lambda s: (TIERS.index(s["tier"]), s["name"]))
    return {
        "release": {"id": release.release, "sequence": release.sequence}, "v": v, "services": out,
        "networks": {k: nets[k] for k in sorted(used_nets)}, "volumes": sorted(volumes),
        "secrets": {k: n for k, n in secret_names.items()}, "configs": configs,
    }


def _service_values(name: str, raw: Any, services: dict[str, Any]) -> dict[str, Any]:
    where = f"stack.values.services.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    if raw.get("tier") not in TIERS:
        raise ConfigError(f"{where}.tier: expected one of {', '.join(TIERS)}")
    if not isinstance(raw.get("zone"), str):
        raise ConfigError(f"{where}.zone: expected the zone label of the nodes it runs on")
    for other in raw.get("talks_to") or []:
        if other not in services:
            raise ConfigError(f"{where}.talks_to: {other!r} is not a service of the stack")
    if raw.get("volume") and int(raw.get("replicas", 1)) != 1:
        raise ConfigError(f"{where}.replicas: a service with a volume runs one replica (its data is on one node)")
    return raw


def _config_text(name: str, svc: dict[str, Any], needs_secret: bool) -> str:
    lines = [f"SERVICE_NAME={name}"]
    if svc.get("upstream"):
        lines.append(f"UPSTREAM={svc['upstream']}")
    if needs_secret:
        lines.append("REQUIRE_SECRET=1")
    for key, value in sorted((svc.get("config") or {}).items()):
        text = str(value)
        if not _CONFIG_KEY.match(str(key)) or "\n" in text or "\r" in text:
            raise ConfigError(f"stack.values.services.{name}.config.{key}: expected KEY: one-line value")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def _data_node(site: Site, name: str, svc: dict[str, Any]) -> str:
    if svc.get("node"):
        node = str(svc["node"])
        if node not in {n.name for n in site.nodes}:
            raise ConfigError(f"stack.values.services.{name}.node: {node} is not a node of the site")
        return node
    for n in site.nodes:
        if n.zone == svc["zone"]:
            return n.name
    raise ConfigError(f"stack.values.services.{name}.zone: no node of the site is in zone {svc['zone']}")


def render_template(path: Path, ctx: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True)  # noqa: S701 - YAML, not HTML
    try:
        return env.get_template(path.name).render(**ctx)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{path}: template uses an undefined value: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"{path}: template not found: {exc.name}") from None


def parse_stack(text: str, where: Path) -> tuple[dict[str, Any], Stack]:
    import yaml
    from pydantic import ValidationError

    from tvdeploy.release.stack_model import Stack

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (rendered line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{where}: the rendered stack is not valid YAML{line}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: the rendered stack is not a mapping")
    try:
        return doc, Stack.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: rendered stack: {loc}: {err.get('msg')}{more}") from None
