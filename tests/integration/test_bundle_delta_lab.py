"""Deltas on the lab (issue 8, second "Done when", with --small images): "A version 2 delta for a
one-service hot-fix, built against an inventory of version 1, verifies and carries only the
changed application layer and metadata." (Layer-level: built with --no-patches; byte-level
patches are tested in test_bundle_patch_lab.py.)

The inventory is made here with ``make_inventory`` from the v1 bundle's blob digests (what a site
that imported v1 holds), standing in for ``bundle inventory SITE`` (issue 9), as the issue asks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle.delta import missing_base_blobs
from tvdeploy.bundle.inventory import make_inventory
from tvdeploy.bundle.reader import read_bundle
from tvdeploy.release.spec import load_release_spec

pytestmark = pytest.mark.lab

HOTFIX = "cloud"


def hotfix_spec(lab_images, path: Path) -> Path:
    """Version 1 of every service except ONE, at version 2."""
    v1 = load_release_spec(lab_images.release_v1).images
    v2 = load_release_spec(lab_images.release_v2).images
    images = {svc: (v2[svc] if svc == HOTFIX else ref) for svc, ref in v1.items()}
    path.write_text("release: lab-v1-hotfix-1\nsequence: 2\nimages:\n"
                    + "".join(f"  {svc}: {ref}\n" for svc, ref in images.items()))
    return path


def test_hotfix_delta_against_a_v1_inventory(cli, lab_images, operator_key: str, tmp_path: Path) -> None:
    signer = bk.make_key("signer-1")[0]
    root = bk.make_trust(tmp_path / "root.json", [signer], 1, [bk.make_key("root-1")[0]])
    v1 = tmp_path / "v1.tar"
    r = cli("bundle", "build", lab_images.release_v1, "--engine", lab_images.docker_host, "-o", v1)
    assert r.code == 0, r.stderr
    full = read_bundle(v1)

    from tvdeploy.audit.recorder import signing_key

    have = tmp_path / "HAVE.json"
    site_digests = [f"sha256:{h}" for h in full.blob_digests]
    have.write_bytes(make_inventory("lab", site_digests, {"release": "lab-v1", "sequence": 1}, signing_key()))

    delta = tmp_path / "hotfix.tar"
    r = cli("bundle", "build", hotfix_spec(lab_images, tmp_path / "hotfix.yaml"), "--engine",
            lab_images.docker_host, "-o", delta, "--since", have, "--key", "signer-1", "--no-patches")
    assert r.code == 0, r.stderr

    r = cli("bundle", "verify", delta, "--trust", root)
    assert r.code == 0, r.stderr
    d = read_bundle(delta)
    assert f"{delta}: delta: {len(d.blob_digests)} blobs shipped, {len(d.expected)} expected on site" in r.stdout

    # What it carries: the hot-fixed service's changed application layer, and metadata (every
    # image's config and manifest); nothing else.
    inv = d.inventory["images"]
    v1_layers = {lay["digest"] for i in full.inventory["images"].values() for lay in i["layers"]}
    changed = [lay["digest"] for lay in inv[HOTFIX]["layers"] if lay["digest"] not in v1_layers]
    assert len(changed) == 1  # the lab's v2 differs in its application layer only
    metadata = {i["config"] for i in inv.values()} | {i["digest"] for i in d.release["images"].values()}
    shipped = {f"sha256:{h}" for h in d.blob_digests}
    assert shipped == metadata | set(changed)
    assert missing_base_blobs(d, site_digests) == []
    assert set(d.expected) == {x.removeprefix("sha256:") for i in inv.values() for x in
                               (lay["digest"] for lay in i["layers"])} - {changed[0].removeprefix("sha256:")}

    changed_size = next(lay["size"] for lay in inv[HOTFIX]["layers"] if lay["digest"] == changed[0])
    assert delta.stat().st_size <= changed_size + (1 << 20)  # issue 8's target: changed layers + 1 MiB

    r = cli("bundle", "inspect", delta, "--json")
    doc = json.loads(r.stdout)
    assert doc["delta"] is True and doc["images"][HOTFIX]["shipped_bytes"] > changed_size
    others = [i for svc, i in doc["images"].items() if svc != HOTFIX]
    assert all(i["expected_bytes"] == i["size"] - i["shipped_bytes"] for i in others)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_inspect_of_a_delta(cli, lab_images, operator_key: str, tmp_path: Path) -> None:
    """``skopeo inspect`` needs only the index, manifest and config, all of which a delta ships:
    it reads every image of a delta although most layers are absent."""
    v1 = tmp_path / "v1.tar"
    assert cli("bundle", "build", lab_images.release_v1, "--engine", lab_images.docker_host, "-o", v1).code == 0
    from tvdeploy.audit.recorder import signing_key

    have = tmp_path / "HAVE.json"
    have.write_bytes(make_inventory("lab", read_bundle(v1).blob_digests, None, signing_key()))
    delta = tmp_path / "hotfix.tar"
    spec = hotfix_spec(lab_images, tmp_path / "hotfix.yaml")
    r = cli("bundle", "build", spec, "--engine", lab_images.docker_host, "-o", delta, "--since", have)
    assert r.code == 0, r.stderr
    for svc, img in read_bundle(delta).release["images"].items():
        proc = subprocess.run(["skopeo", "inspect", f"oci-archive:{delta}:{img['reference']}"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, (svc, proc.stderr)
        assert json.loads(proc.stdout)["Digest"] == img["digest"], svc
