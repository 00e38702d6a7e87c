"""Reporters: rich bars on a terminal, plain lines in pipes, JSON lines under --json."""

from __future__ import annotations

import io
import json

from rich.console import Console

from tvdeploy.cli.reporters import JsonLinesReporter, PlainReporter, RichReporter


def test_rich_reporter_shows_sizes_for_bytes_and_counts_otherwise() -> None:
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, force_terminal=True, width=120, no_color=True))
    rep.task("b", "bundle", total=3 * 1024 * 1024, unit="bytes")
    rep.advance("b", 1024 * 1024)
    rep.task("n", "nodes", total=4)
    rep.advance("n", 2)
    rep.progress.refresh()
    rep.done("b")
    rep.done("n")
    text = buf.getvalue()
    assert "MB" in text
    assert "2/4" in text or "4/4" in text


def test_plain_reporter_lines(capsys) -> None:
    rep = PlainReporter()
    rep.task("t", "configuring 3 node(s)", total=3)
    rep.done("t")
    rep.warn("clock offset +7.0 s")
    err = capsys.readouterr().err.splitlines()
    assert err == ["configuring 3 node(s) ...", "configuring 3 node(s): done", "warning: clock offset +7.0 s"]


def test_json_lines_reporter_emits_one_object_per_line(capsys) -> None:
    rep = JsonLinesReporter()
    rep.task("t", "apply", total=2)
    rep.event("vm.created", name="lab-mgr-1")
    rep.done("t")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["event"] for d in lines] == ["task.start", "vm.created", "task.done"]
    assert lines[1]["name"] == "lab-mgr-1"
