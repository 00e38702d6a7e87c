"""Under CI=true a lab or server test that would be skipped fails instead (tests/conftest.py):
CI cannot be green because it ran less than it should."""

from __future__ import annotations

import pytest

CONFTEST = "from tests.conftest import NEEDS_MACHINE, pytest_runtest_makereport  # noqa: F401\n"
TESTS = """
import pytest

@pytest.mark.lab
def test_lab_without_vcsim():
    pytest.skip("vcsim did not build")

@pytest.mark.server
def test_server_without_package():
    pytest.skip("needs Debian's docker-registry")

def test_unit_skip():
    pytest.skip("not on this platform")
"""


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 2, 1), ("", 0, 3)])
def test_skipped_lab_and_server_tests_fail_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                    ci: str, failed: int, skipped: int) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(["*would be skipped, and CI=true runs every lab test*vcsim did not build*"])
