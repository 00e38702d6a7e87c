"""The lab's air-gap sink, the pure part: firewall rules, and the parsers that turn its counters
and kernel-log lines into findings (who tried to reach what outside the lab).

A node with no route fails before any packet exists, which proves nothing. With the sink on,
every node has a default route via the host side of the lab bridge, and the host's firewall:
- ``raw PREROUTING -i BRIDGE ! -d SUBNET -> TVLAB<i>-SINK``: one hashlimit match per protocol
  that only records each flow (``/proc/net/ipt_hashlimit/tvlab<i>-tcp|udp|icmp``: source,
  destination, port; kept a day, whatever else floods the kernel log), LOG (prefix
  ``tvlab<i>-sink: ``, rate-limited: per-flow packet counts) then DROP. The raw table runs
  before routing and conntrack: a caught packet is never routed, whatever the host's ip_forward
  or FORWARD policy.
- ``mangle POSTROUTING -s SUBNET -> TVLAB<i>-EXIT``: RETURN for the bridge itself and loopback,
  else LOG (``tvlab<i>-exit: ``) and DROP. A lab packet about to leave the machine by any other
  interface: it must stay 0, and proves the sink caught everything first.
The DROP rules' packet counters are the count; the log names source, destination and port.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

LOG_LIMIT = ["-m", "limit", "--limit", "50/second", "--limit-burst", "200"]  # protects the host's log


@dataclass(frozen=True)
class SinkNames:
    index: int

    @property
    def sink_chain(self) -> str:
        return f"TVLAB{self.index}-SINK"

    @property
    def exit_chain(self) -> str:
        return f"TVLAB{self.index}-EXIT"

    @property
    def sink_prefix(self) -> str:
        return f"tvlab{self.index}-sink: "

    @property
    def exit_prefix(self) -> str:
        return f"tvlab{self.index}-exit: "

    @property
    def comment(self) -> str:
        return f"tvdeploy-lab-{self.index}"

    def flow_table(self, protocol: str) -> str:
        """Name of the hashlimit table recording the flows of *protocol* (at most 15 characters)."""
        return f"tvlab{self.index}-{protocol}"


FLOW_PROTOCOLS = ("tcp", "udp", "icmp")
FLOW_TABLE_DIR = "/proc/net/ipt_hashlimit"


@dataclass(frozen=True)
class Rule:
    """One iptables rule: ``iptables -t TABLE -A|-I|-C|-D CHAIN *spec``."""

    table: str
    chain: str
    spec: tuple[str, ...]


def jump_rules(names: SinkNames, bridge: str, subnet: str) -> list[Rule]:
    """The two rules in the built-in chains that send lab traffic into the lab's own chains."""
    tag = ("-m", "comment", "--comment", names.comment)
    return [
        Rule("raw", "PREROUTING", ("-i", bridge, "!", "-d", subnet, *tag, "-j", names.sink_chain)),
        Rule("mangle", "POSTROUTING", ("-s", subnet, *tag, "-j", names.exit_chain)),
    ]


def chain_rules(names: SinkNames, bridge: str) -> list[Rule]:
    """The contents of the lab's own chains (flushed and written again by `lab sink on`)."""
    tag = ("-m", "comment", "--comment", names.comment)
    sink, exit_ = names.sink_chain, names.exit_chain
    flows = [Rule("raw", sink, ("-p", proto, *tag, *_record_flow(names, proto))) for proto in FLOW_PROTOCOLS]
    return [
        *flows,
        Rule("raw", sink, (*tag, *LOG_LIMIT, "-j", "LOG", "--log-prefix", names.sink_prefix)),
        Rule("raw", sink, (*tag, "-j", "DROP")),
        Rule("mangle", exit_, ("-o", bridge, *tag, "-j", "RETURN")),
        Rule("mangle", exit_, ("-o", "lo", *tag, "-j", "RETURN")),
        Rule("mangle", exit_, (*tag, *LOG_LIMIT, "-j", "LOG", "--log-prefix", names.exit_prefix)),
        Rule("mangle", exit_, (*tag, "-j", "DROP")),
    ]


def _record_flow(names: SinkNames, protocol: str) -> tuple[str, ...]:
    """A match that never limits (no target follows): it only keeps an entry per flow."""
    mode = "srcip,dstip,dstport" if protocol in ("tcp", "udp") else "srcip,dstip"
    return ("-m", "hashlimit", "--hashlimit-upto", "1000000/sec", "--hashlimit-burst", "1000000",
            "--hashlimit-mode", mode, "--hashlimit-name", names.flow_table(protocol),
            "--hashlimit-htable-expire", "86400000")  # fmt: skip


def flows_from_table(text: str, protocol: str) -> list[tuple[str, str, int | None]]:
    """Flows of one hashlimit table (``EXPIRES SRC:SPORT->DST:DPORT CREDIT CAP COST``): (source,
    destination, destination port or None)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or "->" not in fields[1]:
            continue
        src, _, dst = fields[1].partition("->")
        src_ip, dst_ip = src.rsplit(":", 1)[0], dst.rsplit(":", 1)[0]
        port = dst.rsplit(":", 1)[1] if ":" in dst else ""
        out.append((src_ip, dst_ip, int(port) if protocol in ("tcp", "udp") and port.isdigit() else None))
    return sorted(set(out), key=lambda f: (f[0], f[1], -1 if f[2] is None else f[2]))


def merge_flows(logged: list[Finding], tables: dict[str, str]) -> list[Finding]:
    """The logged findings, plus every flow recorded in the tables that the log lost (packets 0:
    its count is in the total only)."""
    seen = {(f.source, f.destination, f.protocol.split()[0], f.port) for f in logged if f.where == "sink"}
    extra = []
    for protocol, text in sorted(tables.items()):
        for src, dst, port in flows_from_table(text, protocol):
            if protocol == "icmp":
                known = any(k[:3] == (src, dst, "icmp") for k in seen)
            else:
                known = (src, dst, protocol, port) in seen
            if not known:
                extra.append(Finding("sink", src, dst, protocol, port, 0))
    return logged + extra


# Counters -------------------------------------------------------------------------------------
def dropped_packets(listing: str) -> int:
    """Packets counted by the DROP rules of ``iptables -t T -L CHAIN -v -x -n`` output."""
    total = 0
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0].isdigit() and fields[2] == "DROP":
            total += int(fields[0])
    return total


# Kernel log -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """Packets from *source* to *destination* (outside the lab) that the sink caught."""

    where: str  # "sink" (caught on the lab bridge) or "exit" (about to leave the machine)
    source: str
    destination: str
    protocol: str  # tcp, udp, icmp, or the protocol number
    port: int | None  # destination port (tcp/udp); None otherwise
    packets: int  # from the kernel log; 0 when only the flow table still names the flow

    def describe(self) -> str:
        what = f"{self.protocol}/{self.port}" if self.port is not None else self.protocol
        extra = " (leaving the machine)" if self.where == "exit" else ""
        count = f"{self.packets} packet(s)" if self.packets else "packets not in the kernel log"
        return f"{self.source} -> {self.destination} {what}: {count}{extra}"

    def to_json(self) -> dict[str, object]:
        return {"where": self.where, "source": self.source, "destination": self.destination,
                "protocol": self.protocol, "port": self.port, "packets": self.packets}  # fmt: skip


_FIELD = re.compile(r"\b(SRC|DST|PROTO|DPT|TYPE)=(\S+)")


@dataclass(frozen=True)
class KmsgRecord:
    seq: int
    message: str


def parse_kmsg(records: Iterable[str]) -> list[KmsgRecord]:
    """``/dev/kmsg`` records (``PRI,SEQ,TIME,FLAGS;MESSAGE``); anything else is skipped."""
    out = []
    for rec in records:
        head, sep, message = rec.partition(";")
        parts = head.split(",")
        if not sep or len(parts) < 2 or not parts[1].isdigit():
            continue
        out.append(KmsgRecord(int(parts[1]), message.split("\n", 1)[0]))
    return out


def findings_from_log(records: Iterable[KmsgRecord], names: SinkNames, after_seq: int) -> list[Finding]:
    """Group the sink's log lines newer than *after_seq* by (where, source, destination, port)."""
    counts: Counter[tuple[str, str, str, str, int | None]] = Counter()
    for rec in records:
        if rec.seq <= after_seq:
            continue
        for where, prefix in (("sink", names.sink_prefix), ("exit", names.exit_prefix)):
            if rec.message.startswith(prefix):
                key = _flow(where, rec.message[len(prefix) :])
                if key is not None:
                    counts[key] += 1
    return [Finding(w, s, d, p, port, n) for (w, s, d, p, port), n in sorted(counts.items(), key=_order)]


def _order(item: tuple[tuple[str, str, str, str, int | None], int]) -> tuple[str, str, str, str, int]:
    (w, s, d, p, port), _n = item
    return (w, s, d, p, -1 if port is None else port)


def _flow(where: str, text: str) -> tuple[str, str, str, str, int | None] | None:
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(text):
        fields.setdefault(key, value)  # the first ID/TYPE belongs to the IP header's protocol part
    if "SRC" not in fields or "DST" not in fields:
        return None
    proto = fields.get("PROTO", "?").lower()
    port = int(fields["DPT"]) if fields.get("DPT", "").isdigit() else None
    if proto in ("icmp", "icmpv6") and "TYPE" in fields:
        proto = f"{proto} type {fields['TYPE']}"
    return (where, fields["SRC"], fields["DST"], proto, port)


# Report ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SinkReport:
    caught: int  # packets dropped on the lab bridge (DROP counter of the sink chain)
    leaving: int  # packets dropped on their way out of the machine (must be 0)
    findings: tuple[Finding, ...]

    @property
    def packets(self) -> int:
        return self.caught + self.leaving

    @property
    def unnamed(self) -> int:
        """Counted packets the kernel log does not name (rate limit, or the log ring wrapped)."""
        return max(0, self.packets - sum(f.packets for f in self.findings))

    @property
    def ok(self) -> bool:
        return self.packets == 0

    def summary(self) -> str:
        if self.ok:
            return "0 packets left the lab's network"
        named = [f.describe() for f in self.findings]
        if self.unnamed and not any(f.packets == 0 for f in self.findings):
            named.append(f"{self.unnamed} more packet(s) not named in the kernel log")
        return f"{self.packets} packet(s) tried to leave the lab's network: " + "; ".join(named)

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "packets": self.packets, "caught": self.caught, "leaving": self.leaving,
                "unnamed": self.unnamed, "findings": [f.to_json() for f in self.findings]}  # fmt: skip
