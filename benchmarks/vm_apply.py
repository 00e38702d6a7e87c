"""Benchmark: VM provisioning against the lab vCenter simulator at 50 ms per API request.

1. `vm apply` of 12 VMs with the default bound (4 at a time) against `vm apply` of 1 VM
   (target: 12 VMs in under 4x the single-VM time), and 12 VMs one at a time (--parallel 1).
2. Fact gathering for 50 VMs: one PropertyCollector retrieval (tvdeploy.facts.vms.gather)
   against naive per-VM property reads (gather_naive, here).
Exits 1 when the target of 1. is missed (2. has none: a comparison).

Run as root on a lab machine:  .venv/bin/python benchmarks/vm_apply.py [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.vcsim_site import site_doc  # noqa: E402
from tvdeploy.lab.vcenter import start_vcenter, stop_vcenter  # noqa: E402


def _site(work: Path, info, nodes: int, name: str) -> Path:
    doc = site_doc(info, nodes=nodes, name=name)
    for k, node in enumerate(doc["nodes"], start=1):
        node["name"] = f"{name}-{k}"
        node["address"] = f"10.250.0.{10 + k}"
        node["role"] = "manager" if k == 1 else "worker"
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(*argv: str) -> float:
    from tvdeploy.cli import options
    from tvdeploy.cli.app import run

    options.OPTIONS.__dict__.update(options.GlobalOptions().__dict__)
    start = time.perf_counter()
    code = run([*argv, "--yes", "-q"])
    took = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"tvdeploy {' '.join(argv)} exited {code}")
    return took


def _fresh(lab: Path, latency_ms: int):
    stop_vcenter(lab)  # the simulator keeps no state: a restart is an empty site folder
    return start_vcenter(lab, latency_ms=latency_ms)


def gather_naive(session: Any, placement: Any) -> list[Any]:
    from tvdeploy.facts.vms import parse_vm

    """The obvious alternative to tvdeploy.facts.vms.gather: property reads VM by VM."""
    facts = []
    for vm in placement.folder.childEntity:
        # Four round trips per VM: name, runtime, config and guest, each read once.
        name, runtime, config, guest = vm.name, vm.runtime, vm.config, vm.guest
        props = {
            "name": name,
            "runtime.powerState": runtime.powerState,
            "config.template": config.template,
            "config.hardware.numCPU": config.hardware.numCPU,
            "config.hardware.memoryMB": config.hardware.memoryMB,
            "config.hardware.device": config.hardware.device,
            "config.extraConfig": config.extraConfig,
            "config.tools.pendingCustomization": config.tools.pendingCustomization,
            "guest.ipAddress": guest.ipAddress,
            "guest.hostName": guest.hostName,
        }
        facts.append(parse_vm(vm._moId, props, placement.network_names))
    return facts


def bench_apply(work: Path, lab: Path, latency_ms: int) -> bool:
    info = _fresh(lab, latency_ms)
    first = str(_site(work, info, 1, "one"))
    with contextlib.redirect_stdout(io.StringIO()):
        _cli("vm", "plan", first)  # warm-up: imports and the first TLS session are not what we measure
    one = _cli("vm", "apply", first)
    info = _fresh(lab, latency_ms)
    twelve = _cli("vm", "apply", str(_site(work, info, 12, "twelve")))
    info = _fresh(lab, latency_ms)
    serial = _cli("vm", "apply", str(_site(work, info, 12, "serial")), "--parallel", "1")
    print(f"vm apply, {latency_ms} ms per request:")
    print(f"  1 VM                       {one:7.2f} s")
    print(f"  12 VMs, --parallel 4       {twelve:7.2f} s   ratio to 1 VM: {twelve / one:.2f}x (target < 4x)")
    print(f"  12 VMs, --parallel 1       {serial:7.2f} s   ratio to 1 VM: {serial / one:.2f}x")
    print(f"  bounded parallel speed-up over one at a time: {serial / twelve:.2f}x")
    met = twelve / one < 4
    print(f"  target < 4x: {'met' if met else 'MISSED'}")
    return met


def bench_facts(work: Path, lab: Path, latency_ms: int) -> None:
    from tvdeploy.config.load import load_site
    from tvdeploy.connectors.vsphere import connect
    from tvdeploy.facts.vms import gather

    info = _fresh(lab, latency_ms)
    path = _site(work, info, 50, "fifty")
    _cli("vm", "apply", str(path), "--parallel", "16")
    site = load_site(path)
    with connect(site) as session:
        placement = session.placement()
        start = time.perf_counter()
        fast = gather(session, placement)
        pc = time.perf_counter() - start
        start = time.perf_counter()
        slow = gather_naive(session, placement)
        naive = time.perf_counter() - start
    assert len(fast) == len(slow) == 50, (len(fast), len(slow))
    assert sorted(f.name for f in fast) == sorted(f.name for f in slow)
    print(f"facts for 50 VMs, {latency_ms} ms per request:")
    print(f"  PropertyCollector (1 retrieval)  {pc:7.2f} s")
    print(f"  naive per-VM property reads      {naive:7.2f} s")
    print(f"  ratio naive / PropertyCollector: {naive / pc:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tvdeploy-bench-vm-") as tmp:
        work = Path(tmp)
        os.environ["TVDEPLOY_HOME"] = str(work / "home")
        (work / "known_hosts").write_text("")
        from tvdeploy.keys.store import generate_key, operator_key_name

        generate_key(operator_key_name(), passphrase=None)  # the audit log needs a signer
        lab = work / "lab"
        try:
            met = bench_apply(work, lab, args.latency_ms)
            bench_facts(work, lab, args.latency_ms)
        finally:
            stop_vcenter(lab)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
