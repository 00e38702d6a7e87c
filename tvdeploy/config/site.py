"""The site file model: one class per key, names are the contract (`site show --json`).

Pure data: no I/O. Cross-field rules live in ``tvdeploy.config.rules``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from tvdeploy.config.types import (
    Fingerprint,
    HostnameLabel,
    SecretRef,
    SitePath,
    StrictModel,
)


class SiteInfo(StrictModel):
    name: HostnameLabel = Field(description="Site name; names the operator state folder.")


class VCenter(StrictModel):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(443, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=256)
    password: SecretRef
    fingerprint: Fingerprint | None = None
    ca_file: SitePath | None = None
    datacenter: str = Field(min_length=1, max_length=80)
    cluster: str = Field(min_length=1, max_length=80)
    datastore: str = Field(min_length=1, max_length=80)
    folder: str = Field(min_length=1, max_length=255)
    template: str = Field(min_length=1, max_length=80)
    network: str = Field(min_length=1, max_length=80)

    @model_validator(mode="after")
    def _one_pin(self) -> VCenter:
        if (self.fingerprint is None) == (self.ca_file is None):
            raise ValueError(
                "give exactly one of fingerprint (SHA-256 of the vCenter certificate) or ca_file"
            )
        return self


class Network(StrictModel):
    subnet: IPv4Network
    gateway: IPv4Address | None = None
    dns: list[IPv4Address] = Field(default_factory=list, max_length=8)
    domain: str | None = Field(None, max_length=253)


class Node(StrictModel):
    name: HostnameLabel
    role: Literal["manager", "worker"]
    address: IPv4Address
    zone: HostnameLabel = Field(description="Network segment the node sits in.")
    cpus: int = Field(2, ge=1, le=128)
    memory_mb: int = Field(4096, ge=256, le=4 * 1024 * 1024)
    disk_gb: int = Field(40, ge=1, le=64 * 1024)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)


class SSH(StrictModel):
    user: str = Field("root", min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    port: int = Field(22, ge=1, le=65535)
    key: SitePath | None = None
    known_hosts: SitePath
    jump_host: str | None = Field(
        None, max_length=300, pattern=r"^([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
    )


class PKI(StrictModel):
    ca_passphrase: SecretRef | None = None
    client_cert_days: int = Field(30, ge=1, le=397)
    server_cert_days: int = Field(365, ge=1, le=825)


class Swarm(StrictModel):
    autolock: bool = True
    escrow_recipients: list[SitePath] = Field(default_factory=list, max_length=16)
    cert_expiry_hours: int = Field(2160, ge=1, le=24 * 365 * 5)
    encrypted_networks: bool = True
    publish_mode: Literal["ingress", "host"] = "ingress"
    data_path_port: int = Field(4789, ge=1024, le=49151)


class Registry(StrictModel):
    mode: Literal["site-registry", "node-load"] = "site-registry"
    port: int = Field(5000, ge=1, le=65535)


class Stack(StrictModel):
    template: SitePath | None = Field(None, description="A site's own copy of templates/trueverit/stack.yml.j2.")
    values: dict[str, Any] = Field(default_factory=dict, description="Overrides of templates/trueverit/defaults.yaml.")
    secrets: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")], SecretRef] = Field(
        default_factory=dict, max_length=64,
        description="Swarm secrets of the stack: name -> env:VAR or file:PATH (mounted, never in environment).",
    )


class Approver(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
                      description="Who signs waivers; a waiver's approver names this entry.")
    key: SitePath = Field(description="The approver's Ed25519 public key: PEM or 64 hex digits.")


class Policies(StrictModel):
    packs: list[str] = Field(default_factory=lambda: ["cis-docker"], max_length=32)
    waivers: list[SitePath] = Field(default_factory=list, max_length=64)
    fail_on: Literal["critical", "high", "medium", "low"] = "high"
    approvers: list[Approver] = Field(default_factory=list, max_length=32)


class Trust(StrictModel):
    root: SitePath | None = None


class Site(StrictModel):
    version: Literal[1]
    site: SiteInfo
    vcenter: VCenter | None = None
    network: Network
    nodes: list[Node] = Field(min_length=1, max_length=256)
    ssh: SSH
    pki: PKI = Field(default_factory=PKI)
    swarm: Swarm = Field(default_factory=Swarm)
    registry: Registry = Field(default_factory=Registry)
    stack: Stack = Field(default_factory=Stack)
    policies: Policies = Field(default_factory=Policies)
    trust: Trust = Field(default_factory=Trust)
    state_dir: SitePath | None = None

    @property
    def managers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "manager"]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
