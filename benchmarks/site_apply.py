"""`tvdeploy apply` on a converged lab site (every layer checked, nothing to do) against the
same checks by hand, one command per layer, on a 3-node lab of this benchmark's own running the
18-service stack.

    .venv/bin/python benchmarks/site_apply.py [--work DIR] [--small] [--keep] [--runs N]

Setup: lab up, stand-in images, a signer key and trust root, bundle v1 built and signed, then one
`apply` from nothing (its time is printed too). Then N converged runs of `apply --json` (the
per-layer seconds come from its result) against the by-hand sequence a field engineer would type
to learn the same: `vm plan`, `tls plan`, `swarm plan`, `bundle import` (a no-op for a held
bundle), `release plan`, `policy check`. Target: a converged apply under 10 s; exits 1 if missed.
Needs root and the lab's Debian packages, like `tvdeploy lab up`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from release_deploy import Bench as DeployBench  # noqa: E402

TARGET_SECONDS = 10.0


class Bench(DeployBench):
    def __init__(self, work: Path, small: bool) -> None:
        super().__init__(work, small)
        self.site = self.lab / "site.yaml"  # the lab's own site file, as a field engineer has it

    def setup_bundle(self) -> tuple[Path, Path]:
        self.tv("lab", "up", "--dir", self.lab)
        self.tv("lab", "images", "--dir", self.lab, *(["--small"] if self.small else []))
        root = self.trust_root()
        bundle = self.work / "v1.tar"
        if not bundle.exists():
            engine = f"unix://{self.lab / 'engine' / 'docker.sock'}"
            self.tv("bundle", "build", self.lab / "release-v1.yaml", "--engine", engine, "-o", bundle,
                    "--key", "signer-1")
        return bundle, root

    def apply(self, bundle: Path, root: Path) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        out = self.tv("apply", self.site, "--bundle", bundle, "--trust", root, "--trust-new-hosts", "--yes", "--json")
        return time.perf_counter() - t0, json.loads(out.strip().splitlines()[-1])

    def by_hand(self, bundle: Path, root: Path) -> dict[str, float]:
        steps: list[tuple[str, tuple[object, ...]]] = [
            ("vm plan", ("vm", "plan", self.site, "--detailed-exitcode")),
            ("tls plan", ("tls", "plan", self.site, "--detailed-exitcode")),
            ("swarm plan", ("swarm", "plan", self.site, "--detailed-exitcode")),
            ("bundle import", ("bundle", "import", self.site, bundle, "--trust", root, "--yes")),
            ("release plan", ("release", "plan", self.site, "lab-v1", "--detailed-exitcode")),
            ("policy check", ("policy", "check", self.site)),
        ]
        out: dict[str, float] = {}
        for name, args in steps:
            t0 = time.perf_counter()
            self.tv(*args)
            out[name] = time.perf_counter() - t0
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="tvbench-apply-"))).resolve()
    b = Bench(work, args.small)
    try:
        bundle, root = b.setup_bundle()
        first, doc = b.apply(bundle, root)
        per_layer = ", ".join(f"{x['layer']} {x['seconds']:.1f}" for x in doc["layers"])
        print(f"first apply (nothing to running stack): {first:.1f} s ({per_layer})")
        applies, hands = [], []
        for _ in range(args.runs):
            seconds, doc = b.apply(bundle, root)
            assert doc["changed"] is False, doc
            applies.append((seconds, doc))
            hands.append(b.by_hand(bundle, root))
    finally:
        if not args.keep:
            b.tv("lab", "down", "--dir", b.lab)
            shutil.rmtree(work, ignore_errors=True)
    apply_s = statistics.median(s for s, _ in applies)
    hand_s = statistics.median(sum(h.values()) for h in hands)
    print(f"converged apply, median of {args.runs}: {apply_s:.1f} s (target < {TARGET_SECONDS:.0f} s)")
    layers: dict[str, list[float]] = {}
    for _, d in applies:
        for x in d["layers"]:
            layers.setdefault(x["layer"], []).append(x["seconds"])
    for name, values in layers.items():
        print(f"  {name:10} {statistics.median(values):5.1f} s")
    print(f"by hand, one command per layer, median: {hand_s:.1f} s")
    for name in hands[0]:
        print(f"  {name:14} {statistics.median(h[name] for h in hands):5.1f} s")
    print(f"ratio apply / by hand: {apply_s / hand_s:.2f}x")
    print(json.dumps({"first_apply": round(first, 2), "apply": round(apply_s, 2), "by_hand": round(hand_s, 2),
                      "layers": {k: round(statistics.median(v), 2) for k, v in layers.items()}}))
    return 0 if apply_s < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
