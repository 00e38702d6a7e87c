"""Helpers for bundle tests: synthetic ``docker save`` archives, small bundles, keys, trust roots,
and hostile rewrites of a bundle tar.

The synthetic archives are a stand-in for a build engine in unit tests of the pure format code
(no engine runs in unit tests); they use the real ``docker save`` layout of Engine 20.10:
``<v1id>/{VERSION,json,layer.tar}``, ``<imageid>.json``, ``manifest.json``, ``repositories``,
members in lexical order, and a symlink for a layer another image already wrote.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BASE_LAYER = layer_tar({"bin/busybox": b"\x7fELF" + b"b" * 3000})


@dataclass
class FakeImage:
    tag: str
    layers: list[bytes]
    labels: dict[str, str] = field(default_factory=dict)
    created: str = "2026-11-01T00:00:00Z"

    def config(self) -> bytes:
        doc = {
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": {"Labels": self.labels, "Cmd": ["/bin/busybox", "sh"]},
            "rootfs": {"type": "layers",
                       "diff_ids": [f"sha256:{hashlib.sha256(lay).hexdigest()}" for lay in self.layers]},
            "history": [{"created": self.created} for _ in self.layers],
        }
        return json.dumps(doc, sort_keys=True).encode()

    @property
    def config_hex(self) -> str:
        return hashlib.sha256(self.config()).hexdigest()


def service_image(name: str, size: int = 2000, version: str = "1.0") -> FakeImage:
    top = layer_tar({f"srv/{name}": (name.encode() * (size // max(1, len(name)) + 1))[:size]})
    return FakeImage(f"trueverit/{name}:{version}", [BASE_LAYER, top],
                     labels={"org.opencontainers.image.title": name})


def docker_save(images: list[FakeImage], symlink_shared: bool = True, fmt: int = tarfile.USTAR_FORMAT,
                dir_prefix: str = "") -> bytes:
    """A ``docker save`` archive of *images*, as Engine 20.10 writes it. *dir_prefix* makes
    member names long (pax or GNU long-name headers with *fmt*, as Go's archive/tar writes)."""
    entries: dict[str, tuple[str, bytes | str]] = {}  # name -> (kind, data or link target)
    written: dict[str, str] = {}  # diff id -> layer dir
    manifest = []
    for img in images:
        layer_paths = []
        parent = ""
        for i, layer in enumerate(img.layers):
            diff = hashlib.sha256(layer).hexdigest()
            v1 = dir_prefix + hashlib.sha256(f"{img.tag}/{i}/{parent}".encode()).hexdigest()
            parent = v1
            entries[f"{v1}/VERSION"] = ("file", b"1.0")
            entries[f"{v1}/json"] = ("file", json.dumps({"id": v1}).encode())
            if diff in written and symlink_shared:
                entries[f"{v1}/layer.tar"] = ("link", f"../{written[diff]}/layer.tar")
            else:
                entries[f"{v1}/layer.tar"] = ("file", layer)
                written.setdefault(diff, v1)
            layer_paths.append(f"{v1}/layer.tar")
        entries[f"{img.config_hex}.json"] = ("file", img.config())
        manifest.append({"Config": f"{img.config_hex}.json", "RepoTags": [img.tag], "Layers": layer_paths})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        dirs = sorted({n.split("/")[0] for n in entries if "/" in n})
        names = sorted(list(entries) + [d + "/" for d in dirs])
        for name in names:
            if name.endswith("/"):
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            kind, data = entries[name]
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = str(data)
                tar.addfile(info)
            else:
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, data in (("manifest.json", json.dumps(manifest).encode()),
                           ("repositories", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SERVICES = ["cloud", "edge", "iot-flow"]


def default_images() -> list[FakeImage]:
    return [service_image(s) for s in SERVICES]


def spec_for(images: list[FakeImage], release: str = "2026.11-1", sequence: int = 1) -> Any:
    from tvdeploy.release.spec import ReleaseSpec

    return ReleaseSpec.model_validate({
        "release": release, "sequence": sequence,
        "images": {img.tag.split("/")[1].split(":")[0]: img.tag for img in images},
    })


def make_bundle(path: Path, images: list[FakeImage] | None = None, **spec_kw: Any) -> Path:
    from tvdeploy.bundle.writer import write_bundle

    images = images or default_images()
    write_bundle(path, spec_for(images, **spec_kw), io.BytesIO(docker_save(images)))
    return path


def make_key(name: str) -> tuple[Any, str]:
    """A key in the (isolated) key store, unencrypted: (private key, key id)."""
    from tvdeploy.keys.store import generate_key, load_private_key

    info = generate_key(name, passphrase=None)
    return load_private_key(name), info.key_id


def make_trust(path: Path, signer_keys: list[Any], threshold: int, root_keys: list[Any],
               expires: datetime | None = None, now: datetime | None = None) -> Path:
    from tvdeploy.bundle.trust import chain_document, init_chain

    chain = init_chain(signers=[k.public_key() for k in signer_keys], threshold=threshold,
                       root_keys=root_keys, root_threshold=None,
                       expires=expires or datetime.now(UTC) + timedelta(days=365), now=now)
    path.write_bytes(chain_document(chain))
    return path


def sign_with(bundle: Path, key: Any) -> str:
    from tvdeploy.bundle.sign import sign_bundle
    from tvdeploy.keys.store import key_id

    return sign_bundle(bundle, key, key_id(key.public_key())).member


def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            fh = tar.extractfile(info) if info.isfile() else None
            out.append((info, fh.read() if fh else b""))
    return out


def write_members(path: Path, items: list[tuple[tarfile.TarInfo, bytes]],
                  fmt: int = tarfile.USTAR_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in items:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def entry(name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = link
    info.size = len(data) if type_ == tarfile.REGTYPE else 0
    return info, data
