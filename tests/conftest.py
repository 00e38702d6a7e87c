"""Shared test fixtures: an isolated operator home, a CLI runner, an operator key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/unit/test_ci_strict.py runs pytest on pytest


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $TVDEPLOY_HOME, no colour, a fixed width."""
    home = tmp_path_factory.mktemp("tvdeploy-home")
    monkeypatch.setenv("TVDEPLOY_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("TVDEPLOY_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("TVDEPLOY_OPERATOR_KEY", raising=False)
    return home


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the real CLI in-process: cli("site", "validate", path) -> CliResult."""
    from tvdeploy.cli import options
    from tvdeploy.cli.app import run

    def _run(*argv: object) -> CliResult:
        capsys.readouterr()
        options.OPTIONS.__dict__.update(options.GlobalOptions().__dict__)
        code = run([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return _run


@pytest.fixture
def operator_key(isolated_home: Path) -> str:
    """An unencrypted operator key (tests only), so audited commands can sign."""
    from tvdeploy.keys.store import generate_key, operator_key_name

    name = operator_key_name()
    generate_key(name, passphrase=None)
    return name


NEEDS_MACHINE = ("lab", "server")  # markers of tests that need root, Debian packages or a server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Lab tests need root and the Debian packages; elsewhere they are reported, not hidden.
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="lab tests need root (run .ci/run as root)")
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a lab or server test that would be skipped (no root, vcsim did not build, a
    Debian package missing) fails instead: CI is never green because it ran less."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI") == "true"
            and any(m in item.keywords for m in NEEDS_MACHINE)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: would be skipped, and CI=true runs every lab test: {reason}"
