"""Helpers of the swarm lab tests: a small image onto the nodes, test services, site-file edits.

The nodes have no registry and no route out: the image is built in the lab's build engine and
streamed into each node's dockerd over its mutual-TLS API (docker save | docker load).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from tvdeploy.lab import images as lab_images


def small_image(docker_host: str) -> str:
    """The lab's few-MiB busybox base image, built in the build engine if missing."""
    api = lab_images._client(docker_host)
    ref = lab_images.base_ref("small")
    if not lab_images._exists(api, ref):
        lab_images._build(api, ref, lab_images.base_context("small"))
    return ref


def load_image(docker_host: str, ref: str, clients: dict[str, Any]) -> None:
    api = lab_images._client(docker_host)
    data = b"".join(api.get_image(ref))  # a few MiB: held once, sent to every node
    for client in clients.values():
        for _ in client.api.load_image(data):
            pass


def manager_client(clients: dict[str, Any], site: Any) -> Any:
    for node in site.managers:
        info = clients[node.name].info()
        if (info.get("Swarm") or {}).get("ControlAvailable"):
            return clients[node.name]
    raise AssertionError("no manager answers")


def wait_for(check: Any, timeout: float = 90.0, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(interval)


def running_tasks(manager: Any, service: str) -> list[dict[str, Any]]:
    return [
        t
        for t in manager.api.tasks(filters={"service": service, "desired-state": "running"})
        if (t.get("Status") or {}).get("State") == "running"
    ]


def write_site(src: Path, dst: Path, add: list[dict[str, Any]] = (), drop: tuple[str, ...] = ()) -> Path:
    doc = yaml.safe_load(src.read_text())
    doc["nodes"] = [n for n in doc["nodes"] if n["name"] not in drop] + list(add)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst
