"""The lab's site file ``DIR/site.yaml`` (pure: data in, YAML text out).

Valid for `tvdeploy site validate`; every secret is a ``file:`` reference inside the lab dir,
no environment variables. The vcenter section is present only when the simulator runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SiteNode:
    name: str
    role: str
    address: str
    zone: str


@dataclass(frozen=True)
class VcenterSection:
    host: str
    port: int
    user: str
    password_file: str
    fingerprint: str
    datacenter: str
    cluster: str
    datastore: str
    folder: str
    template: str
    network: str


@dataclass(frozen=True)
class LabSiteInputs:
    lab_dir: str
    subnet: str
    gateway: str
    nodes: list[SiteNode]
    vcenter: VcenterSection | None
    approver_key: str | None = None  # the lab approver's public key (tvdeploy/lab/waivers.py)
    waivers: tuple[str, ...] = ()


def node_entry(node: SiteNode) -> dict[str, Any]:
    # Small sizes: provisioning on the simulator records them; the nodes themselves are namespaces.
    return {
        "name": node.name, "role": node.role, "address": node.address, "zone": node.zone,
        "cpus": 2, "memory_mb": 2048, "disk_gb": 20,
    }  # fmt: skip


def _dump(data: dict[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def render_site(inputs: LabSiteInputs) -> str:
    d = inputs.lab_dir
    parts = [
        "# Written by `tvdeploy lab up`: a whole site on this machine (see tvdeploy lab status).\n"
        "# Rewritten on every `lab up`; copy it before editing.\n",
        _dump({"version": 1, "site": {"name": "lab"}}),
    ]
    if inputs.vcenter is not None:
        v = inputs.vcenter
        parts.append("# The vSphere API simulator on loopback, its certificate pinned by SHA-256.\n")
        parts.append(_dump({"vcenter": {
            "host": v.host, "port": v.port, "user": v.user, "password": f"file:{v.password_file}",
            "fingerprint": v.fingerprint, "datacenter": v.datacenter, "cluster": v.cluster,
            "datastore": v.datastore, "folder": v.folder, "template": v.template, "network": v.network,
        }}))  # fmt: skip
    else:
        parts.append("# No vcenter section: the vSphere simulator was not available at `lab up`.\n")
    parts.append("# The lab bridge; nodes have no default route (air-gapped).\n")
    parts.append(_dump({"network": {
        "subnet": inputs.subnet, "gateway": inputs.gateway, "dns": [], "domain": "lab.internal",
    }}))  # fmt: skip
    parts.append(_dump({"nodes": [node_entry(n) for n in inputs.nodes]}))
    parts.append(_dump({"ssh": {
        "user": "root", "port": 22, "key": f"{d}/ssh/id_ed25519", "known_hosts": f"{d}/ssh/known_hosts",
    }}))  # fmt: skip
    parts.append(_dump({"pki": {"ca_passphrase": f"file:{d}/secrets/ca_passphrase"}}))
    parts.append(
        "# This machine's kernel has VXLAN but neither ESP nor IPVS: encrypted overlay networks\n"
        "# pass traffic only between tasks on one node and the ingress routing mesh does not\n"
        "# answer. So the lab uses plain overlay networks and host-mode published ports; the\n"
        "# policy checks report both (waive them for the lab). Real sites keep the defaults.\n"
    )
    parts.append(_dump({"swarm": {"encrypted_networks": False, "publish_mode": "host"}}))
    parts.append(_dump({"registry": {"mode": "site-registry", "port": 5000}}))
    parts.append("# The Trueverit stack (templates/trueverit/): its swarm secret, a file in the lab dir.\n")
    parts.append("# No IPVS here either for service VIPs: services are found by DNS round robin.\n")
    parts.append(_dump({"stack": {"values": {"endpoint_mode": "dnsrr"},
                                  "secrets": {"trueverit": f"file:{d}/secrets/stack_secret"}}}))
    if inputs.approver_key:
        parts.append("# The lab's deviations, waived by signed waivers (re-signed by every `lab up`).\n")
        parts.append(_dump({"policies": {
            "packs": ["cis-docker", "trueverit"], "fail_on": "high", "waivers": list(inputs.waivers),
            "approvers": [{"name": "lab-approver", "key": inputs.approver_key}],
        }}))  # fmt: skip
    parts.append("# The lab's operator state (CA, certificates, audit log) stays inside the lab dir.\n")
    parts.append(_dump({"state_dir": f"{d}/state"}))
    return "".join(parts)


def node_entry_yaml(node: SiteNode) -> str:
    """The site-file entry printed by `lab node add` (to paste under ``nodes:``)."""
    return _dump({"nodes": [node_entry(node)]}).split("\n", 1)[1]
