"""The air-gap check for lab tests: nothing may leave the lab's network, DNS included.

``AirGap(lab_dir)``: ``.on()`` turns the lab's sink on (`tvdeploy lab sink on`: every node gets a
default route into a sink on the lab bridge that counts, logs and drops whatever is bound outside
the lab subnet), ``.reset()`` zeroes its counters, ``.report()`` is the `lab sink report --json`
document, ``.assert_nothing_left()`` fails naming source, destination, protocol and port of every
flow caught since the reset.

``air_gap_for("fixture")`` makes an autouse fixture for a module whose lab comes from that
fixture (any object with ``.dir``): each test of the module runs between a reset and the
assertion. Add it at the top of a module::

    from tests.integration.airgap import air_gap_for
    air_gap = air_gap_for("rlab")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class AirGapBreached(AssertionError):
    """Packets tried to leave the lab: the message names each flow."""


class AirGap:
    def __init__(self, lab_dir: Path) -> None:
        self.dir = Path(lab_dir)

    def _lab(self, verb: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tvdeploy", "lab", "sink", verb, "--dir", str(self.dir), "--json"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "NO_COLOR": "1"})

    def _ok(self, verb: str) -> None:
        proc = self._lab(verb)
        if proc.returncode != 0:
            pytest.fail(f"tvdeploy lab sink {verb} --dir {self.dir}: {proc.stderr.strip()}")

    def on(self) -> None:
        self._ok("on")

    def reset(self) -> None:
        self._ok("reset")

    def report(self) -> dict[str, Any]:
        proc = self._lab("report")
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            pytest.fail(f"tvdeploy lab sink report --dir {self.dir}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def assert_nothing_left(self) -> None:
        doc = self.report()
        if doc["packets"]:
            flows = [f"{f['source']} -> {f['destination']} {f['protocol']}"
                     + (f"/{f['port']}" if f["port"] is not None else "")
                     + f" ({f['packets']} packets{', leaving the machine' if f['where'] == 'exit' else ''})"
                     for f in doc["findings"]]  # fmt: skip
            if doc["unnamed"]:
                flows.append(f"{doc['unnamed']} more packets not named in the kernel log")
            raise AirGapBreached(f"{doc['packets']} packet(s) tried to leave the lab {self.dir}: " + "; ".join(flows))


def air_gap_for(lab_fixture: str) -> Callable[..., Iterator[AirGap]]:
    @pytest.fixture(autouse=True)
    def air_gap(request: pytest.FixtureRequest) -> Iterator[AirGap]:
        check = AirGap(request.getfixturevalue(lab_fixture).dir)
        check.on()
        check.reset()
        yield check
        check.assert_nothing_left()

    return air_gap
