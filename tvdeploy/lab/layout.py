"""Names and places of one lab, derived from its directory and its registry index (pure).

Several labs coexist on one machine (``--dir``): every kernel object a lab makes (bridge, veths,
network namespaces, firewall rules) carries the lab's index, and every file lives under its dir.
Interface names are limited to 15 characters by the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

# Lab subnets: 10.213.<index>.0/24. Outside Docker's local pools (172.17-31/16, 192.168/16) and
# far from where swarm's default overlay pool (10.0.0.0/8, allocated upward from 10.0.0.0/24)
# will reach, so nothing a node's dockerd creates overlaps the lab bridge.
SUBNET_PREFIX = "10.213"
MAX_INDEX = 250
FIRST_HOST = 11  # node k (1-based) gets .(10 + k); .1 is the host side of the bridge
MAX_UNIX_SOCKET_PATH = 107


@dataclass(frozen=True)
class LabLayout:
    dir: Path
    index: int

    @property
    def subnet(self) -> IPv4Network:
        return IPv4Network(f"{SUBNET_PREFIX}.{self.index}.0/24")

    @property
    def gateway(self) -> IPv4Address:
        return IPv4Address(f"{SUBNET_PREFIX}.{self.index}.1")

    @property
    def bridge(self) -> str:
        return f"tvlab{self.index}"

    @property
    def rule_comment(self) -> str:
        """Marks the firewall rules of this lab (and only this lab)."""
        return f"tvdeploy-lab-{self.index}"

    def node_address(self, number: int) -> IPv4Address:
        if not 1 <= number <= 240:
            raise ValueError(f"node number {number} out of range 1..240")
        return IPv4Address(f"{SUBNET_PREFIX}.{self.index}.{FIRST_HOST - 1 + number}")

    def veth(self, number: int) -> str:
        return f"tvl{self.index}v{number}"

    def netns(self, node_name: str) -> str:
        return f"tvlab{self.index}-{node_name}"

    # Files -----------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    @property
    def site_file(self) -> Path:
        return self.dir / "site.yaml"

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    @property
    def operator_state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def nodes_dir(self) -> Path:
        return self.dir / "nodes"

    def node_dir(self, node_name: str) -> Path:
        return self.nodes_dir / node_name

    @property
    def engine_dir(self) -> Path:
        return self.dir / "engine"

    @property
    def engine_socket(self) -> Path:
        return self.engine_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.engine_socket}"

    def release_file(self, version: str) -> Path:
        return self.dir / f"release-{version}.yaml"


def default_lab_dir() -> Path:
    import os

    env = os.environ.get("TVDEPLOY_LAB_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "tvdeploy" / "lab" / "default"
