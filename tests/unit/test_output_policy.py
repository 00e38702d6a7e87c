"""The one output policy of the CLI (tvdeploy/cli/output.py): under --json stdout carries only the
document, and warnings and notes still reach stderr as plain lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tvdeploy.cli import options, output

COMMANDS = Path(__file__).resolve().parents[2] / "tvdeploy" / "cli" / "commands"


@pytest.fixture
def json_mode():
    saved = dict(options.OPTIONS.__dict__)
    options.OPTIONS.__dict__.update(options.GlobalOptions(json=True).__dict__)
    yield
    options.OPTIONS.__dict__.update(saved)


def test_json_reporter_keeps_warnings_on_stderr_and_stdout_clean(json_mode, capsys) -> None:
    rep = output.reporter()
    rep.info("progress")
    rep.task("t", "configuring 3 node(s)", total=3)
    rep.advance("t")
    rep.done("t")
    rep.event("node.ready", node="m1")
    rep.warn("node m1 (10.0.0.1): recorded new host key ssh-ed25519 SHA256:abc")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["warning: node m1 (10.0.0.1): recorded new host key ssh-ed25519 SHA256:abc"]


def test_json_event_stream_reporter_writes_events_on_stdout(json_mode, capsys) -> None:
    rep = output.reporter(events=True)
    rep.event("vm.created", name="lab-mgr-1")
    rep.warn("slow task")
    captured = capsys.readouterr()
    assert json.loads(captured.out)["event"] == "vm.created"
    assert captured.err == "warning: slow task\n"


def test_notes_and_warnings_reach_stderr_under_json(json_mode, capsys) -> None:
    output.note("created an operator key WITHOUT passphrase")
    output.warn("the site CA key is stored unencrypted")
    output.info("progress is hidden")
    output.out("results for people are hidden")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["note: created an operator key WITHOUT passphrase",
                                         "warning: the site CA key is stored unencrypted"]


def test_quiet_hides_notes_but_never_warnings(capsys) -> None:
    saved = dict(options.OPTIONS.__dict__)
    options.OPTIONS.__dict__.update(options.GlobalOptions(quiet=True).__dict__)
    try:
        output.note("a note")
        output.warn("a warning")
        output.reporter().warn("a reporter warning")
    finally:
        options.OPTIONS.__dict__.update(saved)
    assert capsys.readouterr().err.splitlines() == ["warning: a warning", "warning: a reporter warning"]


def test_every_command_group_uses_the_one_reporter() -> None:
    for path in sorted(COMMANDS.glob("*.py")):
        text = path.read_text()
        assert "def _reporter" not in text, f"{path.name}: use tvdeploy.cli.output.reporter()"
        assert "NullReporter" not in text, f"{path.name}: a reporter that drops warnings"
