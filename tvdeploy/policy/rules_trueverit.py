"""The product's own stack rules (TVD-13x): tier networks, the site registry, encrypted overlays."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, PolicyFacts, failed, passed
from tvdeploy.policy.registry import rule
from tvdeploy.policy.rules_stack import _bad, _ok, services


def _networks(svc: Mapping[str, Any]) -> list[str]:
    nets = svc.get("networks") or []
    return sorted(nets) if isinstance(nets, Mapping) else sorted(str(n) for n in nets)


@rule("TVD-130", "Services sit on declared tier networks only", "stack", "medium",
      remediation="Attach each service to the stack's declared overlay tier networks; never to the "
                  "implicit default network.")
def tier_networks(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts, ("rendered",)):
        declared = stack.compose.get("networks") or {}
        nets = _networks(svc)
        undeclared = [n for n in nets if n not in declared]
        not_overlay = [n for n in nets if n in declared
                       and (declared[n] or {}).get("driver", "overlay") != "overlay"]
        if not nets or "default" in nets:
            yield _bad(stack, name, "on the implicit default network", f"networks: {nets}")
        elif undeclared or not_overlay:
            yield _bad(stack, name, "on a network that is not a declared overlay tier",
                       f"networks: {nets}; undeclared: {undeclared}; not overlay: {not_overlay}")
        else:
            yield _ok(stack, name, f"networks: {nets}")


@rule("TVD-131", "Images come from the site registry", "stack", "high",
      remediation="Reference images as tv-registry:<port>/trueverit/<service>@sha256:... (the site "
                  "registry: a replica on every manager, reached with the site CA and a client certificate).",
      params={"repository": "trueverit/"})
def site_registry(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack, name, svc in services(facts, ("rendered", "live")):
        image = str(svc.get("image", ""))
        host, _, rest = image.partition("/")
        local = (":" in host or "." in host) and host.split(":")[0] not in ("docker.io", "index.docker.io")
        if local and rest.startswith(str(params["repository"])):
            yield _ok(stack, name, f"image: {image}")
        else:
            yield _bad(stack, name, "image is not from the site registry", f"image: {image}")


@rule("TVD-132", "Overlay networks are encrypted", "stack", "medium", cis=("7.3",),
      remediation="Give each overlay network driver_opts: {encrypted: ''} (swarm.encrypted_networks).")
def stack_networks_encrypted(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for stack in facts.stacks:
        if stack.kind != "rendered":
            continue
        for name, net in sorted((stack.compose.get("networks") or {}).items()):
            net = net or {}
            if net.get("external") or net.get("driver", "overlay") != "overlay":
                continue
            opts = net.get("driver_opts") or {}
            obj = f"network {name}"
            yield (passed(obj, "driver_opts.encrypted", location=stack.source or None) if "encrypted" in opts
                   else failed(obj, "rendered stack: overlay network is not encrypted",
                               f"driver_opts: {dict(opts)}", location=stack.source or None))
