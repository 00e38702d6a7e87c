"""Air-gap proof (issue 16): the whole job, VMs to running stack, sends not one packet to an
address outside the lab, DNS included — with every node given a default route into the lab's
sink, so an attempt would be a counted packet rather than a "network unreachable" that proves
nothing. Then a deliberate outbound probe makes the same check fail, naming the destination.

One lab of this module's own ($TVDEPLOY_TEST_AIRGAP_LAB_DIR, default /tmp/tvdeploy-test-airgap),
made afresh; the tests run in file order.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.airgap import AirGap, AirGapBreached
from tests.integration.conftest import run_lab
from tests.integration.lab_helpers import ssh
from tests.integration.release_lab import ReleaseLab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROBE_ADDRESS = "203.0.113.7"  # TEST-NET-3: the host's own gateway here is 192.0.2.1 (TEST-NET-1)


@pytest.fixture(scope="module")
def job_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseLab]:
    base = tmp_path_factory.mktemp("airgap")
    lab_dir = Path(os.environ.get("TVDEPLOY_TEST_AIRGAP_LAB_DIR", "/tmp/tvdeploy-test-airgap"))
    home = base / "home"
    lab = ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base / "root.json", {},
                     f"unix://{lab_dir / 'engine' / 'docker.sock'}")
    try:
        lab.tv("lab", "down", "--dir", lab_dir, timeout=300)  # from nothing: no operator state of an earlier run
        run_lab("up", "--dir", lab_dir, home=home)
        run_lab("images", "--small", "--version", "1", "--dir", lab_dir, home=home, timeout=1500)
        yield lab
    finally:
        lab.tv("lab", "down", "--dir", lab_dir, timeout=300)


def resolver() -> str:
    """The host's resolver address, which the nodes share (they use the host's /etc/resolv.conf)."""
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and not fields[1].startswith("127."):
            return fields[1]
    pytest.fail("/etc/resolv.conf: no non-loopback nameserver to probe")


def default_routes(lab: ReleaseLab) -> dict[str, str]:
    site = lab.site_model()
    routes = {}
    for node in site.nodes:
        netns = f"tvlab{_index(lab)}-{node.name}"
        routes[node.name] = subprocess.run(["ip", "-n", netns, "route", "show", "default"], capture_output=True,
                                           text=True, check=True).stdout.strip()
    return routes


def _index(lab: ReleaseLab) -> int:
    import json

    return int(json.loads((lab.dir / "lab.json").read_text())["index"])


def test_the_whole_job_sends_nothing_out_of_the_lab(job_lab: ReleaseLab, record_property) -> None:
    lab, base = job_lab, job_lab.trust.parent
    gap = AirGap(lab.dir)
    gap.on()
    gateway = f"10.213.{_index(lab)}.1"
    # Not vacuous: every node has a route out, into the sink.
    assert set(default_routes(lab).values()) == {f"default via {gateway} dev eth0"}
    gap.reset()
    started = time.monotonic()

    lab.ok("vm", "apply", lab.site, "--yes")
    lab.ok("swarm", "bootstrap", lab.site, "--yes")
    pubs: list[object] = []
    for name in ("signer-1", "signer-2", "root-1"):
        lab.ok("keys", "generate", name, "--no-passphrase")
        lab.ok("keys", "export-public", name, "-o", base / f"{name}.pub", "--force")
    for name in ("signer-1", "signer-2"):
        pubs += ["--signer", base / f"{name}.pub"]
    lab.ok("trust", "init", "-o", lab.trust, *pubs, "--threshold", 2, "--root-key", "root-1", "--expires", "2099-12-31")
    bundle = base / "v1.tar"
    lab.ok("bundle", "build", lab.dir / "release-v1.yaml", "--engine", lab.engine, "-o", bundle)
    for key in ("signer-1", "signer-2"):
        lab.ok("bundle", "sign", bundle, "--key", key)
    lab.ok("bundle", "import", lab.site, bundle, "--trust", lab.trust, "--yes")
    lab.ok("release", "deploy", lab.site, "lab-v1", "--yes")
    rows = lab.json("release", "list", lab.site)
    assert [(r["release"], r["deployed"]) for r in rows] == [("lab-v1", True)]
    record_property("job_seconds", round(time.monotonic() - started, 1))

    assert set(default_routes(lab).values()) == {f"default via {gateway} dev eth0"}  # still routed into the sink
    gap.assert_nothing_left()


def test_an_outbound_probe_fails_the_check_naming_where_it_went(job_lab: ReleaseLab) -> None:
    lab = job_lab
    gap = AirGap(lab.dir)
    gap.on()
    gap.reset()
    node = lab.site_model().nodes[0]
    address, dns = str(node.address), resolver()
    # A process on a node resolving a public name (via the host's resolver, as dockerd does for
    # an image it lacks) and opening a connection to an outside address.
    ssh(lab.dir, address, f"timeout 4 busybox nslookup example.com; timeout 3 busybox wget -q http://{PROBE_ADDRESS}:8080/")
    with pytest.raises(AirGapBreached) as caught:
        gap.assert_nothing_left()
    message = str(caught.value)
    assert f"{address} -> {dns} udp/53" in message
    assert f"{address} -> {PROBE_ADDRESS} tcp/8080" in message
    assert "leaving the machine" not in message
    doc = gap.report()
    assert doc["leaving"] == 0  # caught on the lab bridge: nothing reached another interface
    assert {(f["destination"], f["port"]) for f in doc["findings"]} == {(dns, 53), (PROBE_ADDRESS, 8080)}


def test_a_node_dockerd_asked_for_an_image_it_lacks_is_caught_asking_the_resolver(job_lab: ReleaseLab) -> None:
    lab = job_lab
    gap = AirGap(lab.dir)
    gap.on()
    gap.reset()
    node = lab.site_model().nodes[0]
    address, dns = str(node.address), resolver()
    run = ssh(lab.dir, address, "timeout 40 docker run --rm tvlab/not-on-this-node:1 true", timeout=90)
    assert run.returncode != 0  # no such image anywhere in the lab
    with pytest.raises(AirGapBreached) as caught:
        gap.assert_nothing_left()
    assert f"{address} -> {dns} udp/53" in str(caught.value)
    gap.reset()
    gap.assert_nothing_left()
