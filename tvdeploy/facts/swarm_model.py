"""Observed swarm state as plain data (filled by tvdeploy.facts.swarm from the Docker API)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MemberFact:
    """A node as the swarm's managers see it (docker node ls / inspect)."""

    node_id: str
    hostname: str
    address: str
    role: str  # manager | worker
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    labels: dict[str, str] = field(default_factory=dict)
    engine: str = ""
    leader: bool = False
    reachable: bool = True  # manager reachability ("reachable" / "unreachable")


@dataclass(frozen=True)
class LocalSwarmFact:
    """A node's own view (docker info .Swarm) over its TLS API; "unreachable" if no answer."""

    local_state: str  # inactive | pending | active | locked | error | unreachable
    cluster_id: str | None = None
    node_id: str | None = None
    control_available: bool = False  # a manager that can answer cluster calls now


@dataclass(frozen=True)
class SwarmFacts:
    local: dict[str, LocalSwarmFact]  # by site node name
    members: list[MemberFact] = field(default_factory=list)
    cluster_id: str | None = None
    autolock: bool | None = None
    cert_expiry_hours: int | None = None
    networks: dict[str, bool] = field(default_factory=dict)  # overlay name -> encrypted
    escrowed: bool | None = None  # the operator holds an escrowed unlock key (None: not looked)
