"""Docker Engine packages in a bundle (issue 19): blobs of their own, listed in manifest.json and
in the signed statement; the reader refuses an altered, truncated or hostile package list."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests import bundlekit as bk
from tvdeploy.bundle import engine_packages as ep
from tvdeploy.bundle import statement
from tvdeploy.bundle.reader import BundleError, read_bundle
from tvdeploy.bundle.verify import verify_bundle
from tvdeploy.bundle.writer import write_bundle

PLAT = ep.PLATFORMS["debian-12"]
DEBS = {"docker.io": ("20.10.24+dfsg1-1+deb12u1+b6", "amd64"), "containerd": ("1.6.20~ds1-1+deb12u3", "amd64"),
        "libdevmapper1.02.1": ("2:1.02.185-2", "amd64"), "netbase": ("6.4", "all")}


def _debs(tmp_path: Path) -> list[ep.DebFile]:
    out = []
    for name, (version, arch) in DEBS.items():
        path = tmp_path / f"{name}.deb"
        path.write_bytes(b"!<arch>\n" + name.encode() * 300)
        out.append(ep.DebFile(name, version, arch, path))
    return out


def _bundle(tmp_path: Path) -> Path:
    images = [bk.service_image("cloud")]
    path = tmp_path / "b.tar"
    write_bundle(path, bk.spec_for(images), io.BytesIO(bk.docker_save(images)), debs=(PLAT, _debs(tmp_path)))
    return path


def test_packages_are_blobs_listed_in_the_manifest_and_the_statement(tmp_path: Path) -> None:
    bundle = read_bundle(_bundle(tmp_path))
    found = bundle.engine_packages
    assert found is not None and found.platform == "debian-12-amd64" and found.engine == "docker.io"
    assert [p.name for p in found.packages] == sorted(DEBS)
    assert found.engine_version == DEBS["docker.io"][0]
    lib = next(p for p in found.packages if p.name == "libdevmapper1.02.1")
    assert lib.filename == "libdevmapper1.02.1_2%3a1.02.185-2_amd64.deb"
    assert all(p.digest in bundle.blob_digests for p in found.packages)
    predicate = statement.for_bundle(bundle)["predicate"]
    assert predicate["engine_packages"] == bundle.docs["manifest.json"]["engine_packages"] == found.to_json()


def test_a_signed_bundle_with_packages_verifies(tmp_path: Path, operator_key: str) -> None:
    key = bk.make_key("signer-1")[0]
    path = _bundle(tmp_path)
    bk.sign_with(path, key)
    root = bk.make_trust(tmp_path / "root.json", [key], 1, [bk.make_key("root-1")[0]])
    assert verify_bundle(path, root).bundle.engine_packages is not None


def test_bundles_without_packages_keep_their_statement(tmp_path: Path) -> None:
    bundle = read_bundle(bk.make_bundle(tmp_path / "old.tar"))
    assert bundle.engine_packages is None
    assert "engine_packages" not in statement.for_bundle(bundle)["predicate"]


def _rewrite(path: Path, change: Any) -> Path:
    items = bk.members(path)
    out = [change(info, data) for info, data in items]
    return bk.write_members(path.with_name("hostile.tar"), out)


def test_an_altered_package_is_refused(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    digest = read_bundle(path).engine_packages.packages[0].digest  # type: ignore[union-attr]

    def flip(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        return (info, data[:-1] + bytes([data[-1] ^ 1])) if info.name.endswith(digest) else (info, data)

    with pytest.raises(BundleError, match=rf"^\S+hostile.tar: blobs/sha256/{digest}: content does not match"):
        read_bundle(_rewrite(path, flip))


def test_a_truncated_package_is_refused(tmp_path: Path) -> None:
    path = _bundle(tmp_path)
    found = read_bundle(path).engine_packages
    assert found is not None
    last = max(found.packages, key=lambda p: read_bundle(path).data_offsets[f"blobs/sha256/{p.digest}"])
    cut = read_bundle(path).data_offsets[f"blobs/sha256/{last.digest}"] + 100
    short = tmp_path / "short.tar"
    short.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(BundleError, match="truncated tar"):
        read_bundle(short)


def _with_section(path: Path, edit: Any) -> Path:
    def change(info: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if info.name != "manifest.json":
            return info, data
        doc = json.loads(data)
        edit(doc["engine_packages"])
        return info, json.dumps(doc).encode()

    return _rewrite(path, change)


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["packages"][0].update(name="../../etc/cron.d/x"), r"packages\[0\]: name: not a Debian package name"),
    (lambda s: s["packages"][1].update(version="1.0/../x"), r"packages\[1\]: version: not a Debian version"),
    (lambda s: s["packages"][0].update(architecture="arm64"), r"architecture: expected one of amd64, all"),
    (lambda s: s["packages"][0].update(size=s["packages"][0]["size"] + 1), r"size \d+ differs from blob"),
    (lambda s: s["packages"][0].update(digest="sha256:" + "0" * 64), r"missing blob"),
    (lambda s: s["packages"].append(dict(s["packages"][0])), r"listed twice"),
    (lambda s: s["packages"].pop(next(i for i, p in enumerate(s["packages"]) if p["name"] == "docker.io")),
     r"the engine package docker.io is missing"),
    (lambda s: s.update(platform="windows-11"), r"platform: unknown 'windows-11'"),
    (lambda s: s.update(extra=1), r"expected \{platform, engine, packages\}"),
    (lambda s: s["packages"][0].update(script="rm -rf /"), r"expected \{name, version, architecture, digest, size\}"),
])
def test_a_hostile_package_list_is_one_line(tmp_path: Path, edit: Any, message: str) -> None:
    hostile = _with_section(_bundle(tmp_path), edit)
    with pytest.raises(BundleError, match=rf"^\S+hostile.tar: manifest.json: engine_packages.*{message}") as exc:
        read_bundle(hostile)
    assert "\n" not in str(exc.value)


def test_unknown_platform_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown engine platform 'debian-13' \(known: debian-12\)"):
        ep.platform("debian-13")


def test_control_fields_of_a_real_deb(tmp_path: Path) -> None:
    import subprocess

    from tvdeploy.connectors.apt_engine import AptError, control

    (tmp_path / "pkg" / "DEBIAN").mkdir(parents=True)
    (tmp_path / "pkg" / "DEBIAN" / "control").write_text(
        "Package: tv-probe\nVersion: 1:2.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: probe\n")
    subprocess.run(["dpkg-deb", "--build", str(tmp_path / "pkg"), str(tmp_path / "p.deb")], check=True,
                   capture_output=True)
    assert control(tmp_path / "p.deb")[:3] == ("tv-probe", "1:2.0-1", "all")
    (tmp_path / "bad.deb").write_bytes(b"not a deb")
    with pytest.raises(AptError, match=r"bad.deb: not a Debian package"):
        control(tmp_path / "bad.deb")


def test_apt_resolves_into_a_private_folder_against_the_given_status(tmp_path: Path) -> None:
    from tvdeploy.connectors.apt_engine import apt_argv

    argv = apt_argv("docker.io", "amd64", tmp_path)
    assert argv[:4] == ["apt-get", "install", "--download-only", "--no-install-recommends"]
    assert f"Dir::State::status={tmp_path}/status" in argv and "Debug::NoLocking=1" in argv
    assert f"Dir::Cache::archives={tmp_path}/archives" in argv and argv[-1] == "docker.io"


def test_release_spec_may_ask_for_engine_packages(tmp_path: Path) -> None:
    from tvdeploy.errors import TvdeployError
    from tvdeploy.release.spec import load_release_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("release: r1\nsequence: 1\nimages:\n  cloud: trueverit/cloud:1\nengine_packages: debian-12\n")
    assert load_release_spec(spec).engine_packages == "debian-12"
    spec.write_text("release: r1\nsequence: 1\nimages:\n  cloud: trueverit/cloud:1\nengine_packages: windows\n")
    with pytest.raises(TvdeployError, match=r"spec.yaml:5: engine_packages"):
        load_release_spec(spec)
