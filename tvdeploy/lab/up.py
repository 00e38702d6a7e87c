"""`lab up` / `lab down` / `lab reset` / `lab status`: the lab's life cycle.

Every kernel object and process made is first recorded in ``DIR/lab.json`` (saved after each
step), so an interrupted `lab up` is finished by the next one and cleaned by `lab down`.
"""

from __future__ import annotations

import functools
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tvdeploy.errors import InputFileError, RefusedError, TvdeployError
from tvdeploy.lab import barenode, engine, netns, nodes, proc, registry, sink, vcenter_link
from tvdeploy.lab.doctor import diagnose, gather
from tvdeploy.lab.labstate import LabState, NodeRecord, load_lab, load_state, save_state
from tvdeploy.lab.layout import LabLayout
from tvdeploy.lab.sitefile import LabSiteInputs, SiteNode, render_site
from tvdeploy.lab.sshkeys import ensure_keypair, known_hosts_line
from tvdeploy.lab.topology import NodeSpec, plan_nodes
from tvdeploy.reporting import NullReporter, Reporter
from tvdeploy.state import write_atomic

log = logging.getLogger(__name__)

# What `lab down` removes from the lab dir (and nothing else, in case --dir held other files).
OWNED = ("lab.json", "site.yaml", "ssh", "secrets", "state", "nodes", "engine", "vcenter", "sink.json",
         "release-v1.yaml", "release-v2.yaml", "release-broken.yaml", "images.json", "waivers",
         "release-large-v1.yaml", "release-large-v2.yaml")  # fmt: skip


F = TypeVar("F", bound=Callable[..., Any])


def locked(fn: F) -> F:
    """Run *fn(lab_dir, ...)* holding the lab's lock."""

    @functools.wraps(fn)
    def wrapper(lab_dir: Path, *args: Any, **kwargs: Any) -> Any:
        with registry.lab_lock(lab_dir):
            return fn(lab_dir, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class DoctorFailed(TvdeployError):
    def __init__(self, problems: list[str], apt_command: str | None) -> None:
        msg = "lab doctor: " + "; ".join(problems)
        super().__init__(msg)
        self.problems = problems
        self.apt_command = apt_command


@dataclass
class UpResult:
    layout: LabLayout
    seconds: float
    created: list[str] = field(default_factory=list)
    operator_key_created: bool = False
    vcenter: bool = False


def require_doctor() -> None:
    d = diagnose(gather())
    if not d.ok:
        raise DoctorFailed(d.problems, d.apt_command)


def _state_for(lab_dir: Path) -> tuple[LabLayout, LabState]:
    st = load_state(lab_dir / "lab.json")
    index = registry.allocate(lab_dir, wanted=st.index if st else None)
    if st is not None and st.index != index:
        raise RefusedError(
            f"{lab_dir}: its lab index {st.index} is taken by another lab; run 'tvdeploy lab down --dir {lab_dir}'"
        )
    layout = LabLayout(lab_dir, index)
    if st is None:
        st = LabState(index=index, subnet=str(layout.subnet), bridge=layout.bridge)
    return layout, st


def _record(spec: NodeSpec, layout: LabLayout) -> NodeRecord:
    return NodeRecord(
        number=spec.number, name=spec.name, role=spec.role, zone=spec.zone,
        address=str(layout.node_address(spec.number)), netns=layout.netns(spec.name),
        veth=layout.veth(spec.number),
    )  # fmt: skip


def _same(a: NodeRecord, b: NodeRecord) -> bool:
    return (a.number, a.name, a.role, a.zone, a.address) == (b.number, b.name, b.role, b.zone, b.address)


@locked
def up(lab_dir: Path, node_count: int = 3, vcenter_latency_ms: int = 0, reporter: Reporter | None = None,
       bare: bool | None = None) -> UpResult:
    rep = reporter or NullReporter()
    start = time.monotonic()
    lab_dir = lab_dir.resolve()
    if lab_dir.exists() and not lab_dir.is_dir():
        raise InputFileError(f"{lab_dir}: not a directory (--dir names the lab's directory)")
    require_doctor()
    lab_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout, st = _state_for(lab_dir)
    barenode.choose(st, bare, lab_dir)
    engine.check_socket_path(layout)
    result = UpResult(layout, 0.0)
    save_state(layout.state_file, st)

    lab_pub = ensure_keypair(layout.ssh_key, f"tvdeploy-lab@{lab_dir.name}")
    _ensure_secret(layout.secrets_dir / "ca_passphrase")
    _ensure_secret(layout.secrets_dir / "stack_secret")  # the Trueverit stack's swarm secret
    netns.ensure_bridge(layout.bridge, str(layout.gateway), layout.subnet.prefixlen)
    rule = netns.forward_rule(layout.bridge, layout.rule_comment)
    if rule not in st.rules:
        st.rules.append(rule)
        save_state(layout.state_file, st)
    netns.ensure_rule(rule)

    wanted = [_record(s, layout) for s in plan_nodes(node_count)]
    _drop_unwanted(layout, st, wanted)
    nodes.ensure_mount_points()
    host_keys: dict[str, str] = {}
    for want in wanted:
        rec = st.node(want.name)
        if rec is None:
            want.bare = st.bare
            st.nodes.append(want)
            rec = want
        host_keys[rec.name] = _start_node(layout, st, rec, lab_pub, result)
    for rec in st.nodes:  # nodes added by `lab node add` come back too
        if rec.name not in host_keys:
            host_keys[rec.name] = _start_node(layout, st, rec, lab_pub, result)
    rep.info(f"waiting for {len(st.nodes)} nodes (dockerd, sshd)")
    for rec in st.nodes:
        nodes.wait_ready(rec)
    _write_known_hosts(layout, st, host_keys)

    if not engine.running(st.engine, layout):
        rep.info("starting the build engine")
        engine.start(st.engine, layout)
        save_state(layout.state_file, st)
        result.created.append("build engine")

    vc = None
    if vcenter_link.available():
        rep.info("starting the vCenter simulator")
        vc = vcenter_link.start(lab_dir, vcenter_latency_ms)
        st.vcenter_latency_ms = vcenter_latency_ms
        result.vcenter = vc is not None
    else:
        rep.warn("vCenter simulator module not available yet: the site file has no vcenter section")
    result.operator_key_created = _ensure_operator_key()
    write_site_file(layout, st, vc)
    save_state(layout.state_file, st)
    result.seconds = time.monotonic() - start
    return result


def _start_node(layout: LabLayout, st: LabState, rec: NodeRecord, lab_pub: str, result: UpResult) -> str:
    node_dir = layout.node_dir(rec.name)
    if rec.bare:
        host_pub = barenode.prepare_node_dir(node_dir, rec.name, lab_pub, barenode.lower_root())
    else:
        host_pub = nodes.prepare_node_dir(node_dir, rec.name, lab_pub)
    netns.ensure_node_net(rec.netns, rec.veth, layout.bridge, rec.address, layout.subnet.prefixlen)
    if sink.is_on(layout):  # `lab sink on`: a (re)made or added node is routed into the sink too
        sink.route_node(layout, rec)
    rec.isolated = False  # `lab up` brings every node back: link restored (ensure_node_net)
    if not proc.is_alive(rec.pid, rec.marker, rec.started):
        nodes.launch(rec, node_dir)
        save_state(layout.state_file, st)
        result.created.append(rec.name)
        return host_pub
    if not rec.started:  # a record from before start times were kept
        rec.started = proc.start_time(rec.pid) or 0
    if rec.bare:  # its Docker (once installed) is started by its boot script, like a VM's service
        return host_pub
    if not nodes.has_own_hosts(rec):  # booted by an older boot script: shares the host's /etc/hosts
        nodes.stop(rec)
        nodes.launch(rec, node_dir)
        save_state(layout.state_file, st)
        result.created.append(f"{rec.name} (restarted: own /etc/hosts)")
        return host_pub
    if not nodes.docker_ping(nodes.docker_socket(rec)):  # left stopped by `lab node stop`
        try:
            nodes.dockerd_service(rec, "start")
        except proc.LabCommandError:
            raise proc.LabCommandError(
                f"node {rec.name}: dockerd does not start (its log: {node_dir}/log/docker.log; "
                "'tvdeploy lab reset' wipes its Docker config)"
            ) from None
        result.created.append(f"{rec.name} dockerd")
    return host_pub


def _drop_unwanted(layout: LabLayout, st: LabState, wanted: list[NodeRecord]) -> None:
    """Nodes of the site file that a different --nodes no longer wants (or that changed place)."""
    by_name = {w.name: w for w in wanted}
    keep = []
    for rec in st.nodes:
        want = by_name.get(rec.name)
        if rec.in_site_file and (want is None or not _same(rec, want)):
            _remove_node(layout, rec)
        else:
            keep.append(rec)
    st.nodes = keep
    save_state(layout.state_file, st)


def _remove_node(layout: LabLayout, rec: NodeRecord) -> None:
    nodes.stop(rec)
    netns.delete_node_net(rec.netns, rec.veth)
    _remove_tree(layout.node_dir(rec.name))


def _ensure_secret(path: Path) -> None:
    if not path.exists():
        write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)


def _ensure_operator_key() -> bool:
    from tvdeploy.keys.store import generate_key, list_keys, operator_key_name

    name = operator_key_name()
    if any(k.name == name for k in list_keys()):
        return False
    generate_key(name, passphrase=None)
    return True


def _write_known_hosts(layout: LabLayout, st: LabState, host_keys: dict[str, str]) -> None:
    lines = [known_hosts_line(r.address, host_keys[r.name]) for r in st.nodes if r.name in host_keys]
    write_atomic(layout.known_hosts, ("\n".join(lines) + "\n").encode(), mode=0o644)


def site_nodes(st: LabState) -> list[SiteNode]:
    return [SiteNode(r.name, r.role, r.address, r.zone) for r in st.nodes if r.in_site_file]


def write_site_file(layout: LabLayout, st: LabState, vc: Any) -> None:
    from tvdeploy.lab.waivers import ensure as ensure_waivers

    waived = ensure_waivers(layout.dir)
    inputs = LabSiteInputs(
        lab_dir=str(layout.dir), subnet=st.subnet, gateway=str(layout.gateway),
        nodes=site_nodes(st), vcenter=vcenter_link.section(vc) if vc is not None else None,
        approver_key=str(waived.approver_key), waivers=tuple(str(p) for p in waived.files),
    )  # fmt: skip
    text = render_site(inputs).encode()
    if not layout.site_file.exists() or layout.site_file.read_bytes() != text:
        write_atomic(layout.site_file, text, mode=0o644)


# Down -----------------------------------------------------------------------------------------
@locked
def down(lab_dir: Path, reporter: Reporter | None = None) -> list[str]:
    """Remove everything the lab made; safe to run twice. Returns what was removed."""
    rep = reporter or NullReporter()
    lab_dir = lab_dir.resolve()
    removed: list[str] = []
    st = load_state(lab_dir / "lab.json")
    index = st.index if st is not None else registry.lookup(lab_dir)
    if vcenter_link.available() and lab_dir.exists():
        vcenter_link.stop(lab_dir)
    if index is not None:
        layout = LabLayout(lab_dir, index)
        if st is not None:
            for rec in st.nodes:
                if proc.is_alive(rec.pid, rec.marker, rec.started):
                    removed.append(f"node {rec.name}")
                nodes.stop(rec)
            engine.stop(st.engine)
        # Leftovers of a crashed run: any process still running a boot script of this lab.
        for marker in (str(layout.nodes_dir) + "/", str(layout.engine_dir) + "/"):
            for pid in proc.pids_with_marker(marker):
                proc.kill_and_wait(pid, marker)
        proc.unmount_all_under(lab_dir)
        _remove_container_cgroups(layout)
        sink.remove(layout)
        rules = list(st.rules) if st is not None else []
        rules.append(netns.forward_rule(layout.bridge, layout.rule_comment))
        for rule in rules:
            netns.delete_rule(rule)
        for name in _our_netns(index):
            netns.delete_node_net(name, "")
            removed.append(f"netns {name}")
        for link in _our_links(index):
            netns.run(["ip", "link", "del", link], check=False)
            removed.append(f"link {link}")
        registry.release(lab_dir)
    if lab_dir.exists():
        for name in OWNED:
            _remove_tree(lab_dir / name)
        try:
            lab_dir.rmdir()
        except OSError:
            pass
    rep.info(f"lab {lab_dir} is down")
    return removed


def _our_netns(index: int) -> list[str]:
    base = Path("/run/netns")
    return sorted(p.name for p in base.glob(f"tvlab{index}-*")) if base.is_dir() else []


def _our_links(index: int) -> list[str]:
    names = []
    for p in Path("/sys/class/net").iterdir():
        if p.name == f"tvlab{index}" or p.name.startswith(f"tvl{index}v"):
            names.append(p.name)
    # veths first, the bridge last
    return sorted(names, key=lambda n: n == f"tvlab{index}")


def _remove_container_cgroups(layout: LabLayout) -> None:
    """Node dockerds use the host's cgroup hierarchy: drop their (now empty) container groups."""
    ids = [c.name for c in layout.nodes_dir.glob("*/docker/containers/*")] if layout.nodes_dir.exists() else []
    ids += [c.name for c in (layout.engine_dir / "data" / "containers").glob("*")]
    for cid in ids:
        for group in Path("/sys/fs/cgroup").glob(f"*/docker/{cid}"):
            try:
                group.rmdir()
            except OSError:
                pass


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        proc.unmount_all_under(path)
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # e.g. chattr'd or busy: say so rather than pretend
            shutil.rmtree(path)


# Reset ----------------------------------------------------------------------------------------
@locked
def reset(lab_dir: Path, reporter: Reporter | None = None) -> float:
    """Every node back to unconfigured: processes killed, Docker's config and state wiped
    (daemon.json, certs, swarm, images, containers), dockerd started again with defaults."""
    rep = reporter or NullReporter()
    t0 = time.monotonic()
    layout, st = load_lab(lab_dir)
    for rec in st.nodes:
        nodes.stop(rec)
    _remove_container_cgroups(layout)

    def wipe(rec: NodeRecord) -> None:
        node_dir = layout.node_dir(rec.name)
        for sub in barenode.WIPED_BY_RESET if rec.bare else ("docker", "etc-docker", "log"):
            _remove_tree(node_dir / sub)
            (node_dir / sub).mkdir(mode=0o755)
        (node_dir / nodes.HOSTS_FILE).unlink(missing_ok=True)  # written again by _start_node
        netns.clean_node_netns(rec.netns)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(wipe, st.nodes))
    lab_pub = (layout.ssh_key.with_name("id_ed25519.pub")).read_text().strip()
    result = UpResult(layout, 0.0)
    for rec in st.nodes:
        rec.isolated = False
        _start_node(layout, st, rec, lab_pub, result)
    for rec in st.nodes:
        nodes.wait_ready(rec)
    save_state(layout.state_file, st)
    rep.info(f"{len(st.nodes)} nodes reset")
    return time.monotonic() - t0


# Status ---------------------------------------------------------------------------------------
def node_state(rec: NodeRecord) -> str:
    if not proc.is_alive(rec.pid, rec.marker, rec.started):
        return "down"
    if rec.isolated:
        return "isolated"
    if not nodes.docker_ping(nodes.docker_socket(rec)):
        return "bare" if rec.bare else "docker-stopped"
    return "up"


def status(lab_dir: Path) -> dict[str, Any]:
    lab_dir = lab_dir.resolve()
    st = load_state(lab_dir / "lab.json")
    vc = vcenter_link.status(lab_dir) if lab_dir.exists() else None
    if st is None:
        return {
            "state": "down", "dir": str(lab_dir), "vcenter": None, "nodes": [],
            "build_engine": {"docker_host": None, "state": "down"}, "site_file": None,
        }  # fmt: skip
    layout = LabLayout(lab_dir, st.index)
    node_rows = [
        {"name": r.name, "address": r.address, "state": node_state(r), "role": r.role, "zone": r.zone,
         "in_site_file": r.in_site_file}
        for r in st.nodes
    ]  # fmt: skip
    engine_up = engine.running(st.engine, layout)
    parts_up = [row["state"] != "down" for row in node_rows] + [engine_up]
    if vcenter_link.available():
        parts_up.append(vc is not None)
    state = "up" if all(parts_up) else ("down" if not any(parts_up) else "partial")
    return {
        "state": state,
        "dir": str(lab_dir),
        "vcenter": {"url": vc.url, "fingerprint": vc.fingerprint} if vc is not None else None,
        "nodes": node_rows,
        "build_engine": {"docker_host": layout.docker_host, "state": "up" if engine_up else "down"},
        "site_file": str(layout.site_file) if layout.site_file.exists() else None,
        "subnet": st.subnet,
        "bridge": st.bridge,
        "ssh": {"key": str(layout.ssh_key), "known_hosts": str(layout.known_hosts)},
    }


def memory(lab_dir: Path) -> dict[str, int]:
    """Resident memory (KiB) of each node and of the build engine."""
    _layout, st = load_lab(lab_dir)
    sizes = {r.name: nodes.memory_kib(r) for r in st.nodes}
    sizes["build-engine"] = engine.memory_kib(st.engine)
    return sizes
