"""`release deploy` against `docker stack deploy` of the same stack, on a 3-node lab of this
benchmark's own: 18 services x 2 replicas (stateful ones 1), same update and health settings.

    .venv/bin/python benchmarks/release_deploy.py [--work DIR] [--small] [--keep]

For each tool, from no services: a fresh deploy of v1, then the update of every service to v2,
each timed until every service has converged (tasks of the new image running and healthy, each
update completed). `release deploy` is health-gated and tier-ordered (data, apps, fronts; a new
service after the new services it talks to) and checks the data path; `docker stack deploy
--resolve-image never` starts everything at once and the benchmark polls until it converged.
The docker side runs the very compose file tvdeploy rendered (configs written to files, the
secret and the tier networks already there). Target: at most 1.1x for each; exits 1 if missed.
Needs root and the lab's Debian packages, like `tvdeploy lab up`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

TARGET = 1.1
NS = "com.docker.stack.namespace=trueverit"


class Bench:
    def __init__(self, work: Path, small: bool) -> None:
        self.work, self.small = work, small
        self.lab = work / "lab"
        self.env = {**os.environ, "TVDEPLOY_HOME": str(work / "home"), "NO_COLOR": "1"}
        self.site = work / "site.yaml"

    def tv(self, *args: object, timeout: float = 1800) -> str:
        proc = subprocess.run([sys.executable, "-m", "tvdeploy", *map(str, args)], env=self.env, text=True,
                              capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            sys.exit(f"tvdeploy {' '.join(map(str, args))} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def setup(self) -> None:
        self.tv("lab", "up", "--dir", self.lab)
        self.tv("lab", "images", "--dir", self.lab, *(["--small"] if self.small else []))
        doc = yaml.safe_load((self.lab / "site.yaml").read_text())
        doc["stack"].setdefault("values", {})["replicas"] = 2
        self.site.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.tv("swarm", "bootstrap", self.site, "--yes")
        root = self.trust_root()
        engine = f"unix://{self.lab / 'engine' / 'docker.sock'}"
        listed = json.loads(self.tv("release", "list", self.site, "--json"))
        for v in ("v1", "v2"):
            if any(r["release"] == f"lab-{v}" for r in listed):
                continue
            bundle = self.work / f"{v}.tar"
            self.tv("bundle", "build", self.lab / f"release-{v}.yaml", "--engine", engine, "-o", bundle,
                    "--key", "signer-1")
            self.tv("bundle", "import", self.site, bundle, "--trust", root, "--yes")

    def trust_root(self) -> Path:
        """A signer key and a 1-of-1 trust root (made once per work folder)."""
        keys = self.work / "keys"
        keys.mkdir(exist_ok=True)
        for name in ("signer-1", "root-1"):
            if not (self.work / "home" / "keys" / f"{name}.key").exists():
                self.tv("keys", "generate", name, "--no-passphrase")
            self.tv("keys", "export-public", name, "-o", keys / f"{name}.pub", "--force")
        root = keys / "root.json"
        if not root.exists():
            self.tv("trust", "init", "-o", root, "--signer", keys / "signer-1.pub", "--threshold", 1,
                    "--root-key", "root-1", "--expires", "2099-12-31")
        return root

    def client(self) -> Any:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tvdeploy.config.load import load_site
        from tvdeploy.facts.services import manager_client

        return manager_client(load_site(self.site))

    def remove_stack(self) -> None:
        client = self.client()
        try:
            for svc in client.api.services(filters={"label": NS}):
                client.api.remove_service(svc["ID"])
            deadline = time.monotonic() + 300
            while client.api.tasks(filters={"label": NS}) or client.api.containers(all=True, filters={"label": NS}):
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            client.close()

    def converged(self, images: dict[str, str]) -> bool:
        client = self.client()
        try:
            for svc in client.api.services(filters={"label": NS}):
                key = svc["Spec"]["Labels"].get("io.tvdeploy.service")
                want = images[key]
                if (svc.get("UpdateStatus") or {}).get("State") not in (None, "completed"):
                    return False
                tasks = [t for t in client.api.tasks(filters={"service": svc["ID"], "desired-state": "running"})]
                mode = svc["Spec"]["Mode"]
                n = mode["Replicated"]["Replicas"] if "Replicated" in mode else max(1, len(tasks))
                good = [t for t in tasks if t["Status"]["State"] == "running"
                        and t["Spec"]["ContainerSpec"]["Image"] == want]
                if len(good) < n or len(good) != len(tasks):
                    return False
            return True
        finally:
            client.close()

    def compose_file(self, release: str) -> tuple[Path, dict[str, str]]:
        doc = json.loads(self.tv("release", "render", self.site, release, "--json"))
        folder = self.work / f"compose-{release}"
        folder.mkdir(exist_ok=True)
        for svc in doc["services"].values():  # `docker stack deploy` has no pids limit (the API has)
            svc.get("deploy", {}).get("resources", {}).get("limits", {}).pop("pids", None)
        for key, cfg in doc.get("configs", {}).items():
            (folder / f"{key}.conf").write_text(cfg.pop("content"))
            cfg["file"] = str(folder / f"{key}.conf")
        path = folder / "docker-stack.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path, {k: s["image"] for k, s in doc["services"].items()}

    def docker_env(self) -> dict[str, str]:
        """The docker CLI pointed at the first manager with the operator's client certificate."""
        from tvdeploy.config.load import load_site
        from tvdeploy.pki.ca import pki_paths

        site = load_site(self.site)
        return {**os.environ, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(pki_paths(site).client_dir),
                "DOCKER_HOST": f"tcp://{site.managers[0].address}:2376"}

    def docker(self, compose: Path, images: dict[str, str]) -> float:
        env = self.docker_env()
        t0 = time.perf_counter()
        proc = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(compose),
                               "trueverit"], env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"docker stack deploy failed: {proc.stderr[-2000:]}")
        while not self.converged(images):
            if time.perf_counter() - t0 > 1800:
                sys.exit("docker stack deploy did not converge in 30 min")
            time.sleep(0.5)
        return time.perf_counter() - t0

    def tvdeploy(self, release: str) -> float:
        t0 = time.perf_counter()
        self.tv("release", "deploy", self.site, release, "--yes")
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--small", action="store_true", help="Small stand-in images (CI size) instead of full-size.")
    ap.add_argument("--keep", action="store_true", help="Leave the lab up afterwards.")
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="tvbench-rel-"))).resolve()
    b = Bench(work, args.small)
    try:
        b.setup()
        v1, images1 = b.compose_file("lab-v1")
        v2, images2 = b.compose_file("lab-v2")
        b.remove_stack()
        tv_fresh = b.tvdeploy("lab-v1")
        tv_update = b.tvdeploy("lab-v2")
        b.remove_stack()
        dk_fresh = b.docker(v1, images1)
        dk_update = b.docker(v2, images2)
    finally:
        if not args.keep:
            b.tv("lab", "down", "--dir", b.lab)
            shutil.rmtree(work, ignore_errors=True)
    ok = True
    for what, tv, dk in (("fresh deploy v1", tv_fresh, dk_fresh), ("update all to v2", tv_update, dk_update)):
        ratio = tv / dk
        ok &= ratio <= TARGET
        print(f"{what:18}: release deploy {tv:6.1f} s   docker stack deploy + converge {dk:6.1f} s   "
              f"ratio {ratio:.2f}x (target <= {TARGET}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
