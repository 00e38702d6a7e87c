"""The lab's large-layer variant (issue 18): cloud with tens of MiB of files in its application
layer; version 2 changes one file of about 1 MiB in that layer and nothing else of substance."""

from __future__ import annotations

import io
import tarfile

from tvdeploy.lab import catalog
from tvdeploy.lab.images import large_context


def files_of(context: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def test_releases_differ_only_in_the_large_service() -> None:
    v1, v2 = catalog.large_release_spec("1"), catalog.large_release_spec("2")
    assert (v1["release"], v1["sequence"], v2["release"], v2["sequence"]) == ("lab-large-v1", 1, "lab-large-v2", 2)
    assert v1["images"]["cloud"] == "trueverit/cloud:large-1" and v2["images"]["cloud"] == "trueverit/cloud:large-2"
    assert {k: v for k, v in v1["images"].items() if k != "cloud"} == \
        {k: v for k, v in v2["images"].items() if k != "cloud"} == \
        {k: v for k, v in catalog.release_spec("1")["images"].items() if k != "cloud"}


def test_version_2_changes_one_file_of_about_a_mebibyte() -> None:
    size = 6 * 1024 * 1024
    a, b = files_of(large_context("1", "small", size)), files_of(large_context("2", "small", size))
    assert a.keys() == b.keys()
    modules = [p for p in a if p.startswith("rootfs/app/lib/")]
    assert len(modules) == 6 and sum(len(a[p]) for p in modules) == size
    changed = [p for p in a if a[p] != b[p]]
    assert sorted(changed) == ["Dockerfile", "rootfs/app/lib/module-003.bin", "rootfs/app/service.env"]
    assert len(a["rootfs/app/lib/module-003.bin"]) == catalog.LARGE_FILE
