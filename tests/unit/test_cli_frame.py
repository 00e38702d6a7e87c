"""The CLI conventions of ARCHITECTURE.md: global options anywhere, exit codes, one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "site.example.yaml"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "site", "show", EXAMPLE],
        ["site", "--json", "show", EXAMPLE],
        ["site", "show", "--json", EXAMPLE],
        ["site", "show", EXAMPLE, "--json"],
        ["-q", "site", "show", EXAMPLE, "--no-color", "--json", "-v", "--yes"],
    ],
)
def test_global_options_in_any_position(cli, argv) -> None:
    r = cli(*argv)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is exactly one JSON document
    assert doc["site"]["name"] == "plant-a"


def test_unknown_option_is_usage_error(cli) -> None:
    r = cli("site", "validate", EXAMPLE, "--frobnicate")
    assert r.code == 64
    assert "usage error" in r.stderr and "Traceback" not in r.stderr


def test_missing_argument_is_usage_error(cli) -> None:
    r = cli("site", "validate")
    assert r.code == 64


def test_unknown_command_is_usage_error(cli) -> None:
    assert cli("nonsense").code == 64


def test_help_lists_groups_and_exits_0(cli) -> None:
    r = cli("--help")
    assert r.code == 0
    assert "site" in r.stdout


def test_version(cli) -> None:
    from tvdeploy import __version__

    r = cli("--version")
    assert r.code == 0 and __version__ in r.stdout


def test_json_error_document(cli, tmp_path: Path) -> None:
    r = cli("site", "validate", tmp_path / "missing.yaml", "--json")
    assert r.code == 1
    assert json.loads(r.stdout)["error"].endswith("file not found")
    assert r.stderr.startswith("error: ")


def test_internal_error_has_no_traceback_without_v(cli, monkeypatch) -> None:
    import tvdeploy.config.load as load

    def boom(path):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(load, "load_site", boom)
    r = cli("site", "validate", EXAMPLE)
    assert r.code == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == "error: internal error: RuntimeError: unexpected"
    r = cli("site", "validate", EXAMPLE, "-v")
    assert "Traceback" in r.stderr


def test_split_global_options_keeps_args_after_double_dash() -> None:
    from tvdeploy.cli.options import split_global_options

    opts, rest = split_global_options(["-vv", "a", "--json", "--", "--json"])
    assert opts.verbose == 2 and opts.json
    assert rest == ["a", "--", "--json"]
