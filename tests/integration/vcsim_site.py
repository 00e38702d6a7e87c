"""A site file pointing at a lab vCenter simulator started for one test (its own lab dir).

The simulator keeps its inventory in memory, so a fresh one per test (~0.5 s once the binary is
built) isolates tests that create and delete VMs. The nodes sit on a private subnet: the VMs
need no machines behind them for these tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tvdeploy.lab.vcenter import VcenterInfo, start_vcenter, stop_vcenter


@dataclass
class SimSite:
    dir: Path
    lab_dir: Path
    info: VcenterInfo
    path: Path
    doc: dict[str, Any]

    def write(self, doc: dict[str, Any] | None = None) -> Path:
        if doc is not None:
            self.doc = doc
        self.path.write_text(yaml.safe_dump(self.doc, sort_keys=False))
        return self.path

    def password(self) -> str:
        return self.info.password_file.read_text().strip()


def site_doc(info: VcenterInfo, nodes: int = 3, name: str = "simsite") -> dict[str, Any]:
    return {
        "version": 1,
        "site": {"name": name},
        "vcenter": {
            "host": info.host,
            "port": info.port,
            "user": info.user,
            "password": f"file:{info.password_file}",
            "fingerprint": info.fingerprint,
            "datacenter": info.datacenter,
            "cluster": info.cluster,
            "datastore": info.datastore,
            "folder": info.folder,
            "template": info.template,
            "network": info.network,
        },
        "network": {"subnet": "10.250.0.0/24", "gateway": "10.250.0.1", "dns": ["10.250.0.2"], "domain": "sim.example"},
        "nodes": [
            {
                "name": f"tv-node-{k}",
                "role": "manager" if k == 1 else "worker",
                "address": f"10.250.0.{10 + k}",
                "zone": "core",
                "cpus": 2,
                "memory_mb": 2048,
                "disk_gb": 20,
            }
            for k in range(1, nodes + 1)
        ],
        "ssh": {"user": "root", "known_hosts": "known_hosts"},
    }


def sim_site(tmp: Path, nodes: int = 3, latency_ms: int = 0) -> Iterator[SimSite]:
    lab_dir = tmp / "lab"
    info = start_vcenter(lab_dir, latency_ms=latency_ms)
    try:
        (tmp / "known_hosts").write_text("")
        s = SimSite(tmp, lab_dir, info, tmp / "site.yaml", site_doc(info, nodes))
        s.write()
        yield s
    finally:
        stop_vcenter(lab_dir)


def pyvmomi_session(info: VcenterInfo) -> Any:
    """A direct pyvmomi session for tests that arrange or inspect the inventory, through the
    product's pinned context (never an unverified one)."""
    from pyVim.connect import Connect

    from tvdeploy.config.site import VCenter
    from tvdeploy.connectors.vsphere import tls_context

    vc = VCenter.model_validate(site_doc(info)["vcenter"])
    return Connect(host=info.host, port=info.port, user=info.user, pwd=info.password_file.read_text().strip(),
                   sslContext=tls_context(vc))


def folder_vms(si: Any, info: VcenterInfo) -> dict[str, Any]:
    """name -> VirtualMachine in the site folder (a name seen twice raises: duplicates)."""
    content = si.RetrieveContent()
    dc = next(e for e in content.rootFolder.childEntity if e.name == info.datacenter)
    folder = next(e for e in dc.vmFolder.childEntity if e.name == info.folder)
    out: dict[str, Any] = {}
    for vm in folder.childEntity:
        assert vm.name not in out, f"duplicate VM {vm.name}"
        out[vm.name] = vm
    return out


def clone_foreign(si: Any, info: VcenterInfo, name: str) -> Any:
    """A VM in the site folder that tvdeploy did not make (no marker), as a person would."""
    from pyVmomi import vim

    content = si.RetrieveContent()
    dc = next(e for e in content.rootFolder.childEntity if e.name == info.datacenter)
    folder = next(e for e in dc.vmFolder.childEntity if e.name == info.folder)
    templates = next(e for e in dc.vmFolder.childEntity if e.name == "templates")
    template = next(v for v in templates.childEntity if v.name == info.template)
    cluster = next(e for e in dc.hostFolder.childEntity if e.name == info.cluster)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=cluster.resourcePool), powerOn=False)
    task = template.CloneVM_Task(folder=folder, name=name, spec=spec)
    for _ in range(200):  # bounded: vcsim finishes clones at once
        if task.info.state in ("success", "error"):
            break
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
