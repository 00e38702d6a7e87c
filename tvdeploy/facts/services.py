"""Read-only observation of the deployed stack through a manager's Docker API (mutual TLS):
services of the stack namespace with their live specs and tasks, the swarm objects they refer
to, the nodes, and the release records kept in the swarm (tvdeploy.release.records).

Observed specs are returned as the API gives them plus a by-NAME view (network, secret and
config IDs mapped to names) that the planner compares with the desired specs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import ConnectionFailed, RefusedError
from tvdeploy.release.records import (
    HISTORY_KIND,
    IMPORT_KIND,
    LABEL_KIND,
    HistoryRecord,
    ImportRecord,
    RecordError,
    parse_json,
)
from tvdeploy.release.service_spec import NAMESPACE, SERVICE_LABEL

if TYPE_CHECKING:
    from tvdeploy.config.site import Site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFact:
    id: str
    node: str  # site node name (or the swarm hostname / node id when not declared)
    desired: str
    state: str
    image: str
    error: str
    exit_code: int | None
    container_id: str
    timestamp: str

    @property
    def digest(self) -> str | None:
        return self.image.rsplit("@", 1)[1] if "@" in self.image else None


@dataclass
class ServiceFact:
    id: str
    name: str  # the swarm service name (trueverit_cloud)
    key: str  # the compose / release name (cloud)
    version: int
    spec: dict[str, Any]  # as the API gives it
    by_name: dict[str, Any]  # the same with IDs mapped to names
    update_state: str | None
    update_message: str
    previous_spec: dict[str, Any] | None
    tasks: list[TaskFact] = field(default_factory=list)

    @property
    def image(self) -> str:
        return str(self.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""))

    @property
    def digest(self) -> str | None:
        return self.image.rsplit("@", 1)[1] if "@" in self.image else None

    @property
    def spec_sha256(self) -> str:
        return spec_hash(self.spec)

    def running(self) -> list[TaskFact]:
        return [t for t in self.tasks if t.desired == "running" and t.state == "running"]

    @property
    def desired_replicas(self) -> int | None:
        mode = self.spec.get("Mode") or {}
        return int(mode["Replicated"].get("Replicas", 1)) if "Replicated" in mode else None


@dataclass
class StackFacts:
    stack: str
    services: dict[str, ServiceFact]  # compose name -> fact
    networks: dict[str, str]  # name -> id
    secrets: dict[str, str]
    configs: dict[str, str]
    nodes: dict[str, dict[str, str]]  # swarm node id -> {name, address, state, availability, role}
    history: list[HistoryRecord]  # newest first
    imports: list[ImportRecord]  # highest sequence first
    damaged: list[str] = field(default_factory=list)  # records that could not be read


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def manager_client(site: Site, timeout: int = 30) -> Any:
    """A DockerClient of the first declared manager whose swarm answers cluster calls."""
    from tvdeploy.connectors.docker_api import ClientCert, connect, describe_error
    from tvdeploy.pki.ca import pki_paths

    certs = ClientCert.in_dir(pki_paths(site).client_dir)
    problems = []
    for node in site.managers:
        client = connect(node.name, str(node.address), certs, timeout=timeout)
        try:
            swarm = client.api.info().get("Swarm") or {}
        except Exception as exc:  # noqa: BLE001 - requests/docker errors: try the next manager
            problems.append(describe_error(node.name, str(node.address), 2376, exc).message)
            client.close()
            continue
        if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
            return client
        problems.append(f"node {node.name}: swarm state {swarm.get('LocalNodeState', 'unknown')}")
        client.close()
    if problems and all("unreachable" in p or "timed out" in p for p in problems):
        raise ConnectionFailed(f"site {site.site.name}: no manager answers: {problems[0]}")
    raise RefusedError(f"site {site.site.name}: no active swarm manager ({'; '.join(problems)[:300]}); "
                       "run tvdeploy swarm status / swarm bootstrap")


def observe(site: Site, api: Any, stack: str, with_tasks: bool = True) -> StackFacts:
    """Everything the release planner and status need, in a handful of API calls."""
    nodes = node_table(site, api.nodes())
    networks = {n["Name"]: n["Id"] for n in api.networks()}
    secrets = {s["Spec"]["Name"]: s["ID"] for s in api.secrets()}
    configs_raw = api.configs()
    configs = {c["Spec"]["Name"]: c["ID"] for c in configs_raw}
    history, imports, damaged = read_records(configs_raw)
    services: dict[str, ServiceFact] = {}
    tasks = api.tasks(filters={"label": f"{NAMESPACE}={stack}"}) if with_tasks else []
    by_service: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_service.setdefault(t.get("ServiceID", ""), []).append(t)
    for svc in api.services(filters={"label": f"{NAMESPACE}={stack}"}):
        fact = service_fact(svc, stack, networks, secrets, configs)
        fact.tasks = sorted((task_fact(t, nodes) for t in by_service.get(fact.id, [])),
                            key=lambda t: t.timestamp, reverse=True)
        services[fact.key] = fact
    return StackFacts(stack, services, networks, secrets, configs, nodes, history, imports, damaged)


def node_table(site: Site, raw_nodes: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    out = {}
    declared = {n.name: str(n.address) for n in site.nodes}
    for n in raw_nodes:
        desc, status, spec = n.get("Description") or {}, n.get("Status") or {}, n.get("Spec") or {}
        host = str(desc.get("Hostname", ""))
        addr = str(status.get("Addr", ""))
        name = host if host in declared else next((k for k, a in declared.items() if a == addr), host or n["ID"])
        out[n["ID"]] = {"name": name, "address": declared.get(name, addr), "state": str(status.get("State", "")),
                        "availability": str(spec.get("Availability", "")), "role": str(spec.get("Role", ""))}
    return out


def service_fact(svc: dict[str, Any], stack: str, networks: dict[str, str], secrets: dict[str, str],
                 configs: dict[str, str]) -> ServiceFact:
    spec = svc.get("Spec") or {}
    name = str(spec.get("Name", ""))
    key = (spec.get("Labels") or {}).get(SERVICE_LABEL) or name.removeprefix(f"{stack}_")
    update = svc.get("UpdateStatus") or {}
    return ServiceFact(
        id=svc["ID"], name=name, key=key, version=int((svc.get("Version") or {}).get("Index", 0)), spec=spec,
        by_name=names_view(spec, networks, secrets, configs), update_state=update.get("State"),
        update_message=str(update.get("Message", "")), previous_spec=svc.get("PreviousSpec"),
    )


def names_view(spec: dict[str, Any], networks: dict[str, str], secrets: dict[str, str],
               configs: dict[str, str]) -> dict[str, Any]:
    """The spec with network targets, secret and config IDs replaced by names (pure)."""
    view = json.loads(json.dumps(spec))
    tt = view.get("TaskTemplate") or {}
    by_id = {v: k for k, v in networks.items()}
    for net in tt.get("Networks") or []:
        net["Target"] = by_id.get(net.get("Target"), net.get("Target"))
        net["Aliases"] = sorted(net.get("Aliases") or [])
    if tt.get("Networks"):
        tt["Networks"] = sorted(tt["Networks"], key=lambda n: str(n.get("Target")))
    cs = tt.get("ContainerSpec") or {}
    for ref in cs.get("Secrets") or []:
        ref.pop("SecretID", None)
    for ref in cs.get("Configs") or []:
        ref.pop("ConfigID", None)
    return dict(view)


def task_fact(t: dict[str, Any], nodes: dict[str, dict[str, str]]) -> TaskFact:
    status = t.get("Status") or {}
    cstatus = status.get("ContainerStatus") or {}
    node_id = t.get("NodeID", "")
    exit_code = cstatus.get("ExitCode")
    return TaskFact(
        id=t["ID"], node=nodes.get(node_id, {}).get("name", node_id), desired=str(t.get("DesiredState", "")),
        state=str(status.get("State", "")),
        image=str(((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", "")),
        error=str(status.get("Err", "")), exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        container_id=str(cstatus.get("ContainerID", "")), timestamp=str(status.get("Timestamp", "")),
    )


def read_records(configs: list[dict[str, Any]]) -> tuple[list[HistoryRecord], list[ImportRecord], list[str]]:
    """History (newest first) and imports (highest sequence first) from the swarm's configs."""
    history, imports, damaged = [], [], []
    for c in configs:
        spec = c.get("Spec") or {}
        kind = (spec.get("Labels") or {}).get(LABEL_KIND)
        if kind not in (HISTORY_KIND, IMPORT_KIND):
            continue
        where = f"swarm config {spec.get('Name')}"
        try:
            doc = parse_json(base64.b64decode(spec.get("Data") or ""), where)
            if kind == HISTORY_KIND:
                history.append((spec.get("Name", ""), HistoryRecord.from_json(doc, where)))
            else:
                imports.append(ImportRecord.from_json(doc, where))
        except (RecordError, ValueError) as exc:
            damaged.append(str(exc))
    history.sort(key=lambda pair: (pair[1].time, pair[0]), reverse=True)
    imports.sort(key=lambda r: r.sequence, reverse=True)
    return [h for _n, h in history], imports, damaged
