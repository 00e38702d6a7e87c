"""The lab's air-gap sink, the pure part: firewall rules, and the parsers that turn its counters
and kernel-log lines into findings (who tried to reach what outside the lab).

A node with no route fails before any packet exists, which proves nothing. With the sink on,
every node has a default route via the host side of the lab bridge, and the host's firewall:
- ``raw PREROUTING -i BRIDGE ! -d SUBNET -> TVLAB<i>-SINK``: LOG (prefix ``tvlab<i>-sink: ``,
  rate-limited) then DROP. The raw table runs before routing and conntrack: a caught packet is
  never routed, whatever the host's ip_forward or FORWARD policy.
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
    return [
        Rule("raw", sink, (*tag, *LOG_LIMIT, "-j", "LOG", "--log-prefix", names.sink_prefix)),
        Rule("raw", sink, (*tag, "-j", "DROP")),
        Rule("mangle", exit_, ("-o", bridge, *tag, "-j", "RETURN")),
        Rule("mangle", exit_, ("-o", "lo", *tag, "-j", "RETURN")),
        Rule("mangle", exit_, (*tag, *LOG_LIMIT, "-j", "LOG", "--log-prefix", names.exit_prefix)),
        Rule("mangle", exit_, (*tag, "-j", "DROP")),
    ]


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
    packets: int

    def describe(self) -> str:
        what = f"{self.protocol}/{self.port}" if self.port is not None else self.protocol
        extra = " (leaving the machine)" if self.where == "exit" else ""
        return f"{self.source} -> {self.destination} {what}: {self.packets} packet(s){extra}"

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
        if self.unnamed:
            named.append(f"{self.unnamed} more packet(s) not named in the kernel log")
        return f"{self.packets} packet(s) tried to leave the lab's network: " + "; ".join(named)

    def to_json(self) -> dict[str, object]:
        return {"ok": self.ok, "packets": self.packets, "caught": self.caught, "leaving": self.leaving,
                "unnamed": self.unnamed, "findings": [f.to_json() for f in self.findings]}  # fmt: skip
