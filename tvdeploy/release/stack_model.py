"""The rendered stack: a compose file (version 3.8) validated key by key (pure).

Only the keys tvdeploy turns into service specs are accepted; anything else is refused with its
key path, so a typo in a site's own template is an error, not a silently dropped setting. Keys
that swarm ignores (privileged, devices, pid, ipc, network_mode, userns_mode, security_opt,
cgroup_parent) are accepted so the policy checks can report them ("does nothing on a swarm site").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tvdeploy.release import units

NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Healthcheck(_Strict):
    test: list[str] | str
    interval: str = "30s"
    timeout: str = "30s"
    retries: int = Field(3, ge=0, le=100)
    start_period: str = "0s"
    disable: bool = False

    @field_validator("interval", "timeout", "start_period")
    @classmethod
    def _duration(cls, v: str) -> str:
        units.duration_ns(v)
        return v


class NetworkAttach(_Strict):
    aliases: list[str] = Field(default_factory=list, max_length=16)


class Mount(_Strict):
    type: Literal["volume", "bind", "tmpfs"]
    source: str | None = Field(None, max_length=4096)
    target: str = Field(pattern=r"^/", max_length=4096)
    read_only: bool = False


class FileRef(_Strict):
    source: str = Field(pattern=NAME)
    target: str = Field(min_length=1, max_length=4096)
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> int:
        return units.file_mode(v)


class Port(_Strict):
    target: int = Field(ge=1, le=65535)
    published: int | None = Field(None, ge=1, le=65535)
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"


class Limits(_Strict):
    cpus: str | None = None
    memory: str | None = None
    pids: int | None = Field(None, ge=1)

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, v: Any) -> str | None:
        if v is not None:
            units.nano_cpus(v)
        return None if v is None else str(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str | None:
        if v is not None:
            units.size_bytes(v)
        return None if v is None else str(v)


class Resources(_Strict):
    limits: Limits = Field(default_factory=Limits)
    reservations: Limits = Field(default_factory=Limits)


class RestartPolicy(_Strict):
    condition: Literal["none", "on-failure", "any"] = "any"
    delay: str = "5s"
    max_attempts: int = Field(0, ge=0)
    window: str = "0s"


class UpdateConfig(_Strict):
    parallelism: int = Field(1, ge=0)
    delay: str = "0s"
    failure_action: Literal["continue", "rollback", "pause"] = "pause"
    monitor: str = "5s"
    max_failure_ratio: float = Field(0, ge=0, le=1)
    order: Literal["stop-first", "start-first"] = "stop-first"


class Placement(_Strict):
    constraints: list[str] = Field(default_factory=list, max_length=32)
    max_replicas_per_node: int | None = Field(None, ge=1)


class Deploy(_Strict):
    mode: Literal["replicated", "global"] = "replicated"
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    replicas: int = Field(1, ge=0, le=1000)
    labels: dict[str, str] = Field(default_factory=dict)
    placement: Placement = Field(default_factory=Placement)
    resources: Resources = Field(default_factory=Resources)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    update_config: UpdateConfig = Field(default_factory=UpdateConfig)
    rollback_config: UpdateConfig = Field(default_factory=UpdateConfig)


class Service(_Strict):
    image: str = Field(min_length=1, max_length=512)
    user: str | None = None
    read_only: bool = False
    cap_drop: list[str] = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list)
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    environment: dict[str, str] | list[str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    networks: dict[str, NetworkAttach | None] | list[str] = Field(default_factory=dict)
    volumes: list[Mount] = Field(default_factory=list)
    secrets: list[FileRef] = Field(default_factory=list)
    configs: list[FileRef] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    stop_grace_period: str | None = None
    dns: list[str] | str | None = None
    ulimits: dict[str, int | dict[str, int]] = Field(default_factory=dict)
    deploy: Deploy = Field(default_factory=Deploy)
    # Accepted only so that the policy checks can say "swarm ignores this" (never translated).
    privileged: bool | None = None
    devices: list[str] | None = None
    pid: str | None = None
    ipc: str | None = None
    network_mode: str | None = None
    userns_mode: str | None = None
    security_opt: list[str] | None = None
    cgroup_parent: str | None = None


class NetworkDef(_Strict):
    external: bool = False
    name: str | None = Field(None, pattern=NAME)
    driver: str = "overlay"
    driver_opts: dict[str, str] = Field(default_factory=dict)
    internal: bool = False
    attachable: bool = False


class VolumeDef(_Strict):
    external: bool = False
    name: str | None = Field(None, pattern=NAME)
    labels: dict[str, str] = Field(default_factory=dict)


class ObjectDef(_Strict):
    """A secret or config: external (made by tvdeploy from the site file) or with content."""

    name: str | None = Field(None, pattern=NAME)
    external: bool = False
    content: str | None = Field(None, max_length=500 * 1024)
    file: str | None = None


class Stack(_Strict):
    version: str = "3.8"
    services: dict[str, Service] = Field(min_length=1, max_length=200)
    networks: dict[str, NetworkDef | None] = Field(default_factory=dict)
    volumes: dict[str, VolumeDef | None] = Field(default_factory=dict)
    secrets: dict[str, ObjectDef] = Field(default_factory=dict)
    configs: dict[str, ObjectDef] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _names(cls, v: dict[str, Service]) -> dict[str, Service]:
        import re

        for name in v:
            if not re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", name):
                raise ValueError(f"{name!r}: not a service name (lowercase letters, digits, '-', '_')")
        return v
