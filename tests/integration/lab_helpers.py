"""Helpers for lab tests: SSH to a node the way an operator does (host key checked)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def ssh(lab_dir: Path, address: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh", "-i", str(lab_dir / "ssh" / "id_ed25519"),
        "-o", f"UserKnownHostsFile={lab_dir / 'ssh' / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-o", "GlobalKnownHostsFile=/dev/null",
        f"root@{address}", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def docker_cli(docker_host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", "-H", docker_host, *args], capture_output=True, timeout=timeout, check=False)
