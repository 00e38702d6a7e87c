"""`lab node add|stop|start|isolate|rejoin NAME`: faults and growth for tests and rehearsals."""

from __future__ import annotations

import time
from pathlib import Path

from tvdeploy.errors import RefusedError, TvdeployError
from tvdeploy.lab import netns, nodes
from tvdeploy.lab.labstate import LabState, NodeRecord, save_state
from tvdeploy.lab.layout import LabLayout
from tvdeploy.lab.sitefile import SiteNode, node_entry_yaml
from tvdeploy.lab.sshkeys import known_hosts_line
from tvdeploy.lab.topology import NodeSpec, next_worker
from tvdeploy.lab.up import UpResult, _record, _start_node, load_lab, locked


def _node(st: LabState, lab_dir: Path, name: str) -> NodeRecord:
    rec = st.node(name)
    if rec is None:
        known = ", ".join(n.name for n in st.nodes)
        raise TvdeployError(f"{lab_dir}: no lab node named {name!r} (nodes: {known})")
    return rec


@locked
def add(lab_dir: Path) -> tuple[NodeRecord, str]:
    """Start an unconfigured worker (not written into site.yaml); return it and its site-file
    entry. Its host key is added to the lab's known_hosts."""
    layout, st = load_lab(lab_dir)
    spec = next_worker([NodeSpec(n.number, n.name, n.role, n.zone) for n in st.nodes])
    rec = _record(spec, layout)
    rec.in_site_file = False
    st.nodes.append(rec)
    save_state(layout.state_file, st)
    lab_pub = layout.ssh_key.with_name("id_ed25519.pub").read_text().strip()
    host_pub = _start_node(layout, st, rec, lab_pub, UpResult(layout, 0.0))
    nodes.wait_ready(rec)
    with open(layout.known_hosts, "a") as fh:
        fh.write(known_hosts_line(rec.address, host_pub) + "\n")
    entry = node_entry_yaml(SiteNode(rec.name, rec.role, rec.address, rec.zone))
    return rec, entry


def stop_docker(lab_dir: Path, name: str) -> None:
    _layout, st = load_lab(lab_dir)
    nodes.dockerd_service(_node(st, lab_dir, name), "stop", timeout=90)


def start_docker(lab_dir: Path, name: str, timeout: float = 60) -> None:
    _layout, st = load_lab(lab_dir)
    rec = _node(st, lab_dir, name)
    nodes.dockerd_service(rec, "start")
    deadline = time.monotonic() + timeout
    while not nodes.docker_ping(nodes.docker_socket(rec)):
        if time.monotonic() > deadline:
            raise TvdeployError(f"node {name}: dockerd did not answer within {timeout:.0f} s (see its log/docker.log)")
        time.sleep(0.2)


@locked
def isolate(lab_dir: Path, name: str) -> None:
    layout, st = load_lab(lab_dir)
    rec = _node(st, lab_dir, name)
    netns.detach(rec.veth)
    rec.isolated = True
    save_state(layout.state_file, st)


@locked
def rejoin(lab_dir: Path, name: str) -> None:
    layout, st = load_lab(lab_dir)
    rec = _node(st, lab_dir, name)
    if not netns.link_exists(rec.veth):
        raise RefusedError(f"node {name}: its link {rec.veth} is gone; run 'tvdeploy lab up --dir {lab_dir}'")
    netns.attach(rec.veth, layout.bridge)
    rec.isolated = False
    save_state(layout.state_file, st)


__all__ = ["add", "stop_docker", "start_docker", "isolate", "rejoin", "LabLayout"]
