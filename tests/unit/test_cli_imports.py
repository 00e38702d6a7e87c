"""Startup stays fast: building the CLI imports none of the heavy libraries (a structural check,
not a timing; benchmarks/cli_startup.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["pyVmomi", "docker", "paramiko", "pydantic", "jinja2", "cryptography", "yaml"]

PROBE = """
import json, sys
import tvdeploy.cli.app
tvdeploy.cli.app.build_app()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_building_the_cli_imports_no_heavy_library() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    offenders = sorted(set(HEAVY) & loaded)
    assert not offenders, f"imported at CLI startup: {offenders} (move the import into the command)"


def test_help_imports_no_heavy_library() -> None:
    probe = (
        "import json, sys\n"
        "from tvdeploy.cli.app import run\n"
        "code = run(['--help'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          check=False)
    loaded = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert not sorted(set(HEAVY) & loaded)
