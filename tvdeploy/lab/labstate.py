"""What a lab has made, recorded in ``DIR/lab.json`` so `lab down` removes exactly that.

Process ids are recorded together with a marker that must appear in the process's command line
(the path of its boot script), so a recycled pid of someone else's process is never killed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tvdeploy.errors import InputFileError


@dataclass
class NodeRecord:
    number: int
    name: str
    role: str
    zone: str
    address: str
    netns: str
    veth: str
    pid: int = 0  # host pid of the node's `unshare` (its child is the node's PID 1)
    marker: str = ""  # path of the boot script: must be in the process's cmdline
    started: int = 0  # start time of that pid (clock ticks since boot): identifies it for good
    in_site_file: bool = True  # False for nodes added with `lab node add`
    isolated: bool = False
    bare: bool = False  # its own Debian root, no Docker until installed (tvdeploy.lab.barenode)


@dataclass
class EngineRecord:
    pid: int = 0
    marker: str = ""
    started: int = 0


@dataclass
class LabState:
    index: int
    subnet: str
    bridge: str
    nodes: list[NodeRecord] = field(default_factory=list)
    engine: EngineRecord = field(default_factory=EngineRecord)
    rules: list[list[str]] = field(default_factory=list)  # iptables argv tails we added
    vcenter_latency_ms: int = 0
    bare: bool = False  # `lab up --bare`: every node of the site file is a bare node

    def node(self, name: str) -> NodeRecord | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        nodes = [NodeRecord(**n) for n in data.get("nodes", [])]
        engine = EngineRecord(**data.get("engine", {}))
        return cls(
            index=int(data["index"]),
            subnet=str(data["subnet"]),
            bridge=str(data["bridge"]),
            nodes=nodes,
            engine=engine,
            rules=[list(map(str, r)) for r in data.get("rules", [])],
            vcenter_latency_ms=int(data.get("vcenter_latency_ms", 0)),
            bare=bool(data.get("bare", False)),
        )


def load_state(path: Path) -> LabState | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the lab state: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return LabState.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        detail = type(exc).__name__ if isinstance(exc, KeyError) else str(exc).splitlines()[0][:80]
        raise InputFileError(
            f"{path}: unreadable lab state ({detail}); remove the lab's leftovers by hand"
        ) from None


def save_state(path: Path, lab: LabState) -> None:
    from tvdeploy.state import write_atomic

    write_atomic(path, lab.to_json(), mode=0o600)


def load_lab(lab_dir: Path) -> tuple[Any, LabState]:
    """(the lab's LabLayout, its state): the lab in *lab_dir*, or an error saying to bring it up."""
    from tvdeploy.errors import TvdeployError
    from tvdeploy.lab.layout import LabLayout

    lab_dir = lab_dir.resolve()
    st = load_state(lab_dir / "lab.json")
    if st is None:
        raise TvdeployError(f"{lab_dir}: no lab here (tvdeploy lab up --dir {lab_dir})")
    return LabLayout(lab_dir, st.index), st
