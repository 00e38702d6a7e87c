"""A lab with a formed swarm and releases v1, v2 and v2-broken imported (for the release tests).

Built once per test module: lab up, small stand-in images, swarm bootstrap, two signer keys and
a 2-of-2 trust root, three full bundles built, signed and imported (sequence 1, 2, 3). The
stack is not deployed: the tests do that with `tvdeploy release deploy`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.conftest import run_lab

RELEASES = ("v1", "v2", "broken")
RELEASE_IDS = {"v1": "lab-v1", "v2": "lab-v2", "broken": "lab-v2-broken"}


@dataclass
class ReleaseLab:
    dir: Path
    home: Path
    site: Path
    trust: Path
    bundles: dict[str, Path]
    engine: str

    def tv(self, *args: object, timeout: float = 900, home: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TVDEPLOY_HOME": str(home or self.home), "NO_COLOR": "1", "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    def ok(self, *args: object, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = self.tv(*args, **kw)
        assert proc.returncode == 0, f"tvdeploy {' '.join(map(str, args))}: {proc.stderr[-3000:]}"
        return proc

    def json(self, *args: object, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kw).stdout)

    def site_model(self) -> Any:
        from tvdeploy.config.load import load_site

        return load_site(self.site)


def build(base: Path, lab_dir: Path, home: Path) -> ReleaseLab:
    run_lab("up", "--dir", lab_dir, home=home)
    run_lab("images", "--small", "--dir", lab_dir, home=home, timeout=1500)
    lab = ReleaseLab(lab_dir, home, lab_dir / "site.yaml", base / "root.json", {},
                     f"unix://{lab_dir / 'engine' / 'docker.sock'}")
    lab.ok("swarm", "bootstrap", lab.site, "--yes")
    pubs: list[object] = []
    for name in ("signer-1", "signer-2", "root-1"):
        if not (home / "keys" / f"{name}.key").exists():
            lab.ok("keys", "generate", name, "--no-passphrase")
        lab.ok("keys", "export-public", name, "-o", base / f"{name}.pub", "--force")
    for name in ("signer-1", "signer-2"):
        pubs += ["--signer", base / f"{name}.pub"]
    lab.ok("trust", "init", "-o", lab.trust, *pubs, "--threshold", 2, "--root-key", "root-1", "--expires", "2099-12-31")
    for v in RELEASES:
        bundle = base / f"{v}.tar"
        lab.ok("bundle", "build", lab_dir / f"release-{v}.yaml", "--engine", lab.engine, "-o", bundle)
        for key in ("signer-1", "signer-2"):
            lab.ok("bundle", "sign", bundle, "--key", key)
        lab.ok("bundle", "import", lab.site, bundle, "--trust", lab.trust, "--yes")
        lab.bundles[v] = bundle
    return lab


def manifest_digests(bundle: Path) -> dict[str, str]:
    from tvdeploy.bundle.reader import read_bundle

    return {svc: img["digest"] for svc, img in read_bundle(bundle).release["images"].items()}
