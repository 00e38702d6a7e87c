"""The air-gap sink's pure part: its firewall rules, and its parsers on output recorded from a lab
(kernel-log records read from /dev/kmsg, `iptables -L -v -x -n` of the sink chain)."""

from __future__ import annotations

from pathlib import Path

from tvdeploy.lab.sink_rules import (
    Finding,
    SinkNames,
    SinkReport,
    chain_rules,
    dropped_packets,
    findings_from_log,
    flows_from_table,
    jump_rules,
    merge_flows,
    parse_kmsg,
)  # fmt: skip

DATA = Path(__file__).parent / "data" / "airgap"
NAMES = SinkNames(5)


def recorded() -> list[str]:
    return (DATA / "kmsg-records.txt").read_text().splitlines(keepends=True)


def test_jump_rules_catch_the_bridge_before_routing_and_every_lab_packet_at_the_exit() -> None:
    raw, mangle = jump_rules(NAMES, "tvlab5", "10.213.5.0/24")
    assert (raw.table, raw.chain) == ("raw", "PREROUTING")
    assert raw.spec == ("-i", "tvlab5", "!", "-d", "10.213.5.0/24", "-m", "comment", "--comment", "tvdeploy-lab-5",
                        "-j", "TVLAB5-SINK")
    assert (mangle.table, mangle.chain) == ("mangle", "POSTROUTING")
    assert mangle.spec == ("-s", "10.213.5.0/24", "-m", "comment", "--comment", "tvdeploy-lab-5", "-j", "TVLAB5-EXIT")


def test_chains_log_then_drop_and_the_exit_lets_only_the_bridge_and_loopback_pass() -> None:
    rules = chain_rules(NAMES, "tvlab5")
    sink = [r.spec for r in rules if r.chain == "TVLAB5-SINK"]
    # One flow-recording match per protocol (no target: it only keeps an entry per flow), then LOG, DROP.
    assert [(spec[1], spec[spec.index("--hashlimit-name") + 1], spec[spec.index("--hashlimit-mode") + 1])
            for spec in sink[:3]] == [("tcp", "tvlab5-tcp", "srcip,dstip,dstport"),
                                      ("udp", "tvlab5-udp", "srcip,dstip,dstport"), ("icmp", "tvlab5-icmp", "srcip,dstip")]
    assert all("-j" not in spec for spec in sink[:3])
    assert [spec[-3:] if "LOG" in spec else spec[-2:] for spec in sink[3:]] == [
        ("LOG", "--log-prefix", "tvlab5-sink: "), ("-j", "DROP")]
    exit_ = [r.spec for r in rules if r.chain == "TVLAB5-EXIT"]
    assert exit_[0][:2] == ("-o", "tvlab5") and exit_[0][-1] == "RETURN"
    assert exit_[1][:2] == ("-o", "lo") and exit_[1][-1] == "RETURN"
    assert exit_[-1][-2:] == ("-j", "DROP")
    assert all(r.table == ("raw" if r.chain == "TVLAB5-SINK" else "mangle") for r in rules)


def test_recorded_log_names_source_destination_protocol_and_port() -> None:
    findings = findings_from_log(parse_kmsg(recorded()), NAMES, after_seq=0)
    assert findings == [
        Finding("sink", "10.213.5.11", "10.255.255.53", "udp", 53, 4),
        Finding("sink", "10.213.5.11", "203.0.113.7", "tcp", 80, 3),
        Finding("sink", "10.213.5.12", "198.51.100.9", "icmp type 8", None, 1),
    ]
    assert findings[0].describe() == "10.213.5.11 -> 10.255.255.53 udp/53: 4 packet(s)"


def test_lines_before_the_cursor_and_of_other_labs_are_not_counted() -> None:
    records = parse_kmsg(recorded())
    after = findings_from_log(records, NAMES, after_seq=17656)  # the reset came after the tcp probe
    assert [(f.destination, f.packets) for f in after] == [("10.255.255.53", 4), ("198.51.100.9", 1)]
    assert findings_from_log(records, SinkNames(55), after_seq=0) == []


def test_malformed_records_and_unnamed_lines_are_skipped() -> None:
    records = parse_kmsg(["garbage", "4,x,1,-;tvlab5-sink: SRC=1.2.3.4 DST=5.6.7.8", "4,9,1,-;tvlab5-sink: no fields\n",
                          "4,10,1,-;tvlab5-exit: IN= OUT=eth0 SRC=10.213.5.11 DST=8.8.8.8 PROTO=UDP SPT=1 DPT=53\n"])
    assert [r.seq for r in records] == [9, 10]
    assert findings_from_log(records, NAMES, 0) == [Finding("exit", "10.213.5.11", "8.8.8.8", "udp", 53, 1)]
    assert "(leaving the machine)" in findings_from_log(records, NAMES, 0)[0].describe()


def test_counters_sum_the_drop_rules_of_a_recorded_listing() -> None:
    assert dropped_packets((DATA / "iptables-raw-sink.txt").read_text()) == 8
    assert dropped_packets("Chain TVLAB5-SINK (1 references)\n    pkts      bytes target\n") == 0


def test_report_says_zero_or_names_every_flow_and_what_the_log_lost() -> None:
    assert SinkReport(0, 0, ()).summary() == "0 packets left the lab's network"
    assert SinkReport(0, 0, ()).ok
    flows = (Finding("sink", "10.213.5.11", "10.255.255.53", "udp", 53, 4),)
    report = SinkReport(5, 1, flows)
    assert not report.ok and report.unnamed == 2
    assert report.summary() == ("6 packet(s) tried to leave the lab's network: 10.213.5.11 -> 10.255.255.53 udp/53: "
                                "4 packet(s); 2 more packet(s) not named in the kernel log")
    assert report.to_json()["findings"] == [{"where": "sink", "source": "10.213.5.11", "destination": "10.255.255.53",
                                             "protocol": "udp", "port": 53, "packets": 4}]


def test_sink_commands_on_a_dir_without_a_lab_fail_in_one_line(cli, tmp_path: Path) -> None:
    for verb in ("on", "off", "reset", "report"):
        r = cli("lab", "sink", verb, "--dir", tmp_path / "nolab")
        assert r.code == 1, (verb, r.stderr)
        assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nolab'}: no lab here "
                                                 f"(tvdeploy lab up --dir {tmp_path / 'nolab'})"]


def test_sink_usage_errors_exit_64(cli) -> None:
    assert cli("lab", "sink", "sideways").code == 64
    assert cli("lab", "sink", "report", "--bogus").code == 64


def tables() -> dict[str, str]:
    return {p: (DATA / f"hashlimit-{p}.txt").read_text() for p in ("tcp", "udp", "icmp")}


def test_recorded_flow_tables_name_each_flow_with_its_port() -> None:
    t = tables()
    assert flows_from_table(t["udp"], "udp") == [("10.213.7.11", "10.255.255.53", 53)]
    assert flows_from_table(t["tcp"], "tcp") == [("10.213.7.12", "203.0.113.7", 8080)]
    assert flows_from_table(t["icmp"], "icmp") == [("10.213.7.12", "198.51.100.9", None)]
    assert flows_from_table("garbage\n\n1 2 3", "udp") == []


def test_flows_the_kernel_log_lost_still_appear_by_name() -> None:
    logged = [Finding("sink", "10.213.7.11", "10.255.255.53", "udp", 53, 4),
              Finding("sink", "10.213.7.12", "198.51.100.9", "icmp type 8", None, 1)]
    merged = merge_flows(logged, tables())
    assert merged == logged + [Finding("sink", "10.213.7.12", "203.0.113.7", "tcp", 8080, 0)]
    report = SinkReport(9, 0, tuple(merged))
    assert "10.213.7.12 -> 203.0.113.7 tcp/8080: packets not in the kernel log" in report.summary()
    assert "more packet(s) not named" not in report.summary()  # every flow is named
    assert merge_flows([], {}) == []
