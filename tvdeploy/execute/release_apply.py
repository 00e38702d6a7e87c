"""Service operations of a rollout over a manager's API: create the swarm objects a release
needs, turn by-name specs into sendable ones, create/update/remove services, undo them.

Images are never resolved against a registry: the specs name ``<registry>/<repo>@sha256:...``
and the API (version >= 1.30, we speak 1.41) does not query a registry on service create or
update — the API equivalent of ``docker service create --no-resolve-image``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tvdeploy.release.service_spec import NAMESPACE

if TYPE_CHECKING:
    from tvdeploy.release.stack_render import RenderedStack

log = logging.getLogger(__name__)


@dataclass
class Changed:
    """A service this rollout touched, with what it was before (for the undo)."""

    key: str
    service_id: str
    image: str  # the image it was changed to
    previous: dict[str, Any] | None  # the live spec before (None: created by this rollout)
    previous_image: str | None


def create_objects(api: Any, rendered: RenderedStack, secrets: list[str], configs: list[str]) -> None:
    """Secrets and configs are immutable and content-named: create the missing ones, never update."""
    labels = {NAMESPACE: rendered.stack_name, "io.tvdeploy.release": rendered.release.release}
    for name in secrets:
        api.create_secret(name, rendered.secrets[name].reveal().encode(), labels=labels)
    contents = {d.name: d.content for d in rendered.model.configs.values() if d.name}
    for name in configs:
        api.create_config(name, (contents.get(name) or "").encode(), labels=labels)


def sendable(spec: dict[str, Any], networks: dict[str, str], secrets: dict[str, str],
             configs: dict[str, str]) -> dict[str, Any]:
    """The by-name spec with the IDs the API wants (pure)."""
    out = copy.deepcopy(spec)
    tt = out["TaskTemplate"]
    for net in tt.get("Networks") or []:
        net["Target"] = networks.get(net["Target"], net["Target"])
    cs = tt["ContainerSpec"]
    for ref in cs.get("Secrets") or []:
        ref["SecretID"] = secrets[ref["SecretName"]]
    for ref in cs.get("Configs") or []:
        ref["ConfigID"] = configs[ref["ConfigName"]]
    return out


def _args(spec: dict[str, Any]) -> dict[str, Any]:
    return {"task_template": spec["TaskTemplate"], "name": spec["Name"], "labels": spec.get("Labels"),
            "mode": spec.get("Mode"), "update_config": spec.get("UpdateConfig"),
            "rollback_config": spec.get("RollbackConfig"), "endpoint_spec": spec.get("EndpointSpec")}


def create_service(api: Any, spec: dict[str, Any]) -> str:
    return str(api.create_service(**_args(spec))["ID"])


def update_service(api: Any, service_id: str, spec: dict[str, Any]) -> None:
    current = api.inspect_service(service_id)
    api.update_service(service_id, current["Version"]["Index"], **_args(spec))


def remove_service(api: Any, service_id: str) -> None:
    """Removes the service only: its named volumes stay on their nodes."""
    api.remove_service(service_id)


def image_of(spec: dict[str, Any] | None) -> str | None:
    return None if spec is None else str(spec["TaskTemplate"]["ContainerSpec"].get("Image", ""))


def undo(api: Any, changed: list[Changed]) -> list[str]:
    """Every touched service back to its previous spec (created ones removed), newest first.
    Returns the problems met (the undo goes on past each)."""
    import docker.errors

    problems = []
    for c in reversed(changed):
        try:
            if c.previous is None:
                remove_service(api, c.service_id)
            else:
                update_service(api, c.service_id, c.previous)
        except docker.errors.NotFound:
            continue
        except Exception as exc:  # noqa: BLE001 - keep undoing the others; reported together
            problems.append(f"{c.key}: {str(exc)[:200]}")
    return problems
