"""`lab sink on|off|reset|report`: the air-gap sink of one lab (rules in sink_rules.py).

``on`` gives every node a default route via the host side of the lab bridge and installs the
lab's own chains, which count, log and DROP every packet from the lab's bridge to an address
outside the lab subnet (DNS to the host's resolver included) before the host routes it.
``reset`` zeroes the counters and moves the log cursor (kept in ``DIR/sink.json``); ``report``
says what was caught since. ``off`` removes the routes and the rules; `lab up` puts them back
while ``DIR/sink.json`` says on, and `lab down` removes them with the lab.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from tvdeploy.errors import RefusedError
from tvdeploy.lab import netns, registry
from tvdeploy.lab.labstate import LabState, NodeRecord
from tvdeploy.lab.layout import LabLayout
from tvdeploy.lab.proc import run
from tvdeploy.lab.sink_rules import (
    FLOW_PROTOCOLS,
    FLOW_TABLE_DIR,
    Rule,
    SinkNames,
    SinkReport,
    chain_rules,
    dropped_packets,
    findings_from_log,
    jump_rules,
    merge_flows,
    parse_kmsg,
)  # fmt: skip
from tvdeploy.state import write_atomic

log = logging.getLogger(__name__)

STATE_FILE = "sink.json"
KMSG = "/dev/kmsg"


def _state_path(layout: LabLayout) -> Path:
    return layout.dir / STATE_FILE


def is_on(layout: LabLayout) -> bool:
    return bool(_read_state(layout).get("on"))


def _read_state(layout: LabLayout) -> dict[str, int | bool]:
    try:
        doc = json.loads(_state_path(layout).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_state(layout: LabLayout, on: bool, cursor: int) -> None:
    doc = {"on": on, "cursor": cursor}
    write_atomic(_state_path(layout), (json.dumps(doc) + "\n").encode(), mode=0o600)


# Commands -------------------------------------------------------------------------------------
def enable(lab_dir: Path) -> LabLayout:
    from tvdeploy.lab.labstate import load_lab

    with registry.lab_lock(lab_dir):
        layout, st = load_lab(lab_dir)
        apply(layout, st)
        if not is_on(layout):
            _write_state(layout, True, last_kmsg_seq())
    return layout


def disable(lab_dir: Path) -> LabLayout:
    from tvdeploy.lab.labstate import load_lab

    with registry.lab_lock(lab_dir):
        layout, st = load_lab(lab_dir)
        for rec in st.nodes:
            if netns.netns_exists(rec.netns):
                run(["ip", "-n", rec.netns, "route", "del", "default"], check=False)
        remove(layout)
        _state_path(layout).unlink(missing_ok=True)
    return layout


def reset(lab_dir: Path) -> LabLayout:
    """Zero the counters and skip every log line so far: the next report covers from now."""
    layout = _require_on(lab_dir)
    names = SinkNames(layout.index)
    with registry.lab_lock(lab_dir):
        run(["iptables", "-t", "mangle", "-Z", names.exit_chain])
        _rebuild_sink_chain(layout)  # new rules: zero counters and empty flow tables
        _write_state(layout, True, last_kmsg_seq())
    return layout


def report(lab_dir: Path) -> SinkReport:
    layout = _require_on(lab_dir)
    names = SinkNames(layout.index)
    caught = dropped_packets(run(["iptables", "-t", "raw", "-L", names.sink_chain, "-v", "-x", "-n"]))
    leaving = dropped_packets(run(["iptables", "-t", "mangle", "-L", names.exit_chain, "-v", "-x", "-n"]))
    cursor = int(_read_state(layout).get("cursor", 0))
    findings = []
    if caught + leaving:
        logged = findings_from_log(parse_kmsg(read_kmsg()), names, cursor)
        findings = merge_flows(logged, read_flow_tables(names))
    return SinkReport(caught, leaving, tuple(findings))


def read_flow_tables(names: SinkNames) -> dict[str, str]:
    tables = {}
    for protocol in FLOW_PROTOCOLS:
        try:
            tables[protocol] = Path(FLOW_TABLE_DIR, names.flow_table(protocol)).read_text()
        except OSError:
            continue
    return tables


def _require_on(lab_dir: Path) -> LabLayout:
    from tvdeploy.lab.labstate import load_lab

    layout, _st = load_lab(lab_dir)
    if not is_on(layout):
        raise RefusedError(f"{layout.dir}: the lab's sink is off (tvdeploy lab sink on --dir {layout.dir})")
    return layout


# Rules and routes -----------------------------------------------------------------------------
def apply(layout: LabLayout, st: LabState) -> None:
    """Install (or repair) the lab's chains, the jumps into them, and every node's default route."""
    for rec in st.nodes:
        route_node(layout, rec)


def route_node(layout: LabLayout, rec: NodeRecord) -> None:
    """The node's default route into the sink. The rules go first: no node has a route out
    before the sink is there to catch what it sends."""
    ensure_rules(layout)
    if netns.netns_exists(rec.netns):
        run(["ip", "-n", rec.netns, "route", "replace", "default", "via", str(layout.gateway), "dev", "eth0"])


def ensure_rules(layout: LabLayout) -> None:
    names = SinkNames(layout.index)
    rules = chain_rules(names, layout.bridge)
    if not all(_present(rule) for rule in rules):  # complete already: keep its counters
        for table, chain in (("raw", names.sink_chain), ("mangle", names.exit_chain)):
            if not _chain_exists(table, chain):
                run(["iptables", "-t", table, "-N", chain])
            run(["iptables", "-t", table, "-F", chain])
        for rule in rules:
            run(["iptables", "-t", rule.table, "-A", rule.chain, *rule.spec])
    for rule in jump_rules(names, layout.bridge, str(layout.subnet)):
        if not _present(rule):
            run(["iptables", "-t", rule.table, "-I", rule.chain, "1", *rule.spec])


def _rebuild_sink_chain(layout: LabLayout) -> None:
    names = SinkNames(layout.index)
    run(["iptables", "-t", "raw", "-F", names.sink_chain])
    for rule in chain_rules(names, layout.bridge):
        if rule.chain == names.sink_chain:
            run(["iptables", "-t", rule.table, "-A", rule.chain, *rule.spec])


def remove(layout: LabLayout) -> None:
    """Remove the lab's sink rules and chains (safe when they are not there)."""
    names = SinkNames(layout.index)
    for rule in jump_rules(names, layout.bridge, str(layout.subnet)):
        for _ in range(5):  # a rule inserted twice by a crashed run: every copy
            if not _present(rule):
                break
            run(["iptables", "-t", rule.table, "-D", rule.chain, *rule.spec], check=False)
    for table, chain in (("raw", names.sink_chain), ("mangle", names.exit_chain)):
        if _chain_exists(table, chain):
            run(["iptables", "-t", table, "-F", chain], check=False)
            run(["iptables", "-t", table, "-X", chain], check=False)


def _present(rule: Rule) -> bool:
    argv = ["iptables", "-t", rule.table, "-C", rule.chain, *rule.spec]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _chain_exists(table: str, chain: str) -> bool:
    argv = ["iptables", "-t", table, "-S", chain]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


# Kernel log -----------------------------------------------------------------------------------
def read_kmsg(path: str = KMSG) -> list[str]:
    """Every record in the kernel's log ring, oldest first (one record per read)."""
    records = []
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                chunk = os.read(fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # records overwritten while reading: go on with the next
                continue
            if not chunk:
                break
            records.append(chunk.decode(errors="replace"))
    finally:
        os.close(fd)
    return records


def last_kmsg_seq() -> int:
    seqs = [r.seq for r in parse_kmsg(read_kmsg())]
    return max(seqs, default=0)
