"""`lab images`: stand-in Trueverit images built offline into the lab's build engine.

Three layers per service image, each from its own image so that later builds reuse it:
``tvlab/base:<size>`` (static busybox + a shared block of incompressible data: 128 MiB, or
4 MiB with --small), ``tvlab/deps-<family>:<size>`` (a per-family dependency layer) and the
service's small application layer, the only one that differs between version 1 and 2.
Base and dependency images are built once and reused (same layer digests in v1 and v2).
Build contexts are tar streams made here with fixed mtimes and owners.
"""

from __future__ import annotations

import io
import logging
import random
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tvdeploy.errors import TvdeployError
from tvdeploy.lab import catalog
from tvdeploy.reporting import NullReporter, Reporter

log = logging.getLogger(__name__)

HERE = Path(__file__).parent / "image"
MTIME = 1_700_000_000  # fixed, so identical inputs make identical layers
# Bump when the base or dependency recipe changes: their tags carry it, so an old base in a
# build engine is never reused for a new recipe.
RECIPE = "r2"
BASE_BYTES = {"full": 128 << 20, "small": 4 << 20}
DEPS_BYTES = {"full": 8 << 20, "small": 256 << 10}
APPLETS = (
    "sh ash httpd wget nc cat ls echo sleep mkdir rm ps env grep sed awk hostname id date head tail "
    "wc sha256sum true false kill ln cp mv chmod df du free top uname vi tar gzip nslookup ping "
    "printf test [ which find xargs sort tr cut tee touch stat timeout"
).split()


class Context:
    """A docker build context assembled in memory."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w")  # noqa: SIM115 - closed in bytes()
        self._dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self._dirs:
                self._dirs.add(sub)
                self.tar.addfile(self._info(sub, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def base_ref(size: str) -> str:
    return f"tvlab/base:{size}-{RECIPE}"


def deps_ref(family: str, size: str) -> str:
    return f"tvlab/deps-{family}:{size}-{RECIPE}"


def incompressible(nbytes: int, seed: str) -> bytes:
    """Pseudo-random bytes (gzip cannot shrink them), the same for the same seed."""
    return random.Random(seed).randbytes(nbytes)


def base_context(size: str) -> bytes:
    ctx = Context()
    ctx.file("Dockerfile", b"FROM scratch\nCOPY rootfs/ /\n")
    ctx.file("rootfs/bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
    for applet in APPLETS:
        ctx.symlink(f"rootfs/bin/{applet}", "busybox")
    ctx.dir("rootfs/tmp", 0o1777)
    ctx.dir("rootfs/etc/trueverit")
    ctx.file("rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    ctx.file("rootfs/etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    ctx.file("rootfs/usr/share/trueverit/base.bin", incompressible(BASE_BYTES[size], "trueverit-base"))
    return ctx.bytes()


def deps_context(family: str, size: str) -> bytes:
    ctx = Context()
    ctx.file("Dockerfile", f"FROM {base_ref(size)}\nCOPY rootfs/ /\n".encode())
    data = incompressible(DEPS_BYTES[size] * (1 + catalog.FAMILIES.index(family) % 3), f"deps-{family}")
    ctx.file(f"rootfs/usr/lib/trueverit/{family}/deps.bin", data)
    return ctx.bytes()


def app_dockerfile(service: str, version: str, size: str) -> str:
    family = catalog.SERVICES[service]
    return (
        f"FROM {deps_ref(family, size)}\n"
        "COPY rootfs/ /\n"
        f'LABEL org.opencontainers.image.title="{service}" org.opencontainers.image.version="{version}" '
        'org.opencontainers.image.vendor="Trueverit (lab stand-in)"\n'
        "EXPOSE 8080\n"
        "HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 "
        'CMD ["/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health/"]\n'
        'USER 65534:65534\n'
        'ENTRYPOINT ["/bin/sh", "/app/start.sh"]\n'
    )


def app_context(service: str, version: str, size: str, broken: bool = False) -> bytes:
    ctx = Context()
    ctx.file("Dockerfile", app_dockerfile(service, version, size).encode())
    ctx.file("rootfs/app/service.env", catalog.service_env(service, version, broken).encode())
    ctx.file("rootfs/app/start.sh", (HERE / "start.sh").read_bytes(), 0o755)
    ctx.file("rootfs/www/cgi-bin/index.cgi", (HERE / "index.cgi").read_bytes(), 0o755)
    for page in ("health", "version"):
        ctx.dir(f"rootfs/www/{page}")
    return ctx.bytes()


def large_context(version: str, size: str, total: int) -> bytes:
    """The large-layer variant of LARGE_SERVICE: the usual application files plus *total* bytes
    of incompressible module files, all in the one application layer; version 2 differs in one
    file of about 1 MiB (catalog.large_files) and in the version of its service.env."""
    ctx = Context()
    service = catalog.LARGE_SERVICE
    ctx.file("Dockerfile", app_dockerfile(service, f"large-{version}", size).encode())
    ctx.file("rootfs/app/service.env", catalog.service_env(service, f"large-{version}").encode())
    ctx.file("rootfs/app/start.sh", (HERE / "start.sh").read_bytes(), 0o755)
    ctx.file("rootfs/www/cgi-bin/index.cgi", (HERE / "index.cgi").read_bytes(), 0o755)
    for page in ("health", "version"):
        ctx.dir(f"rootfs/www/{page}")
    for path, (seed, nbytes) in catalog.large_files(total, version).items():
        ctx.file(f"rootfs/{path}", incompressible(nbytes, seed))
    return ctx.bytes()


def registry_context() -> bytes:
    """Debian's docker-registry binary and the shared libraries it links (per ldd)."""
    from tvdeploy.lab.proc import run

    binary = Path("/usr/bin/docker-registry")
    ctx = Context()
    ctx.file(
        "Dockerfile",
        b"FROM scratch\nCOPY rootfs/ /\nEXPOSE 5000\nVOLUME /var/lib/registry\n"
        b'LABEL org.opencontainers.image.title="registry" org.opencontainers.image.version="2.8"\n'
        b'ENTRYPOINT ["/bin/registry"]\nCMD ["serve", "/etc/docker/registry/config.yml"]\n',
    )
    ctx.file("rootfs/bin/registry", binary.read_bytes(), 0o755)
    for lib in linked_libraries(run(["ldd", str(binary)], check=False)):
        real = Path(lib).resolve()
        ctx.file(f"rootfs{lib}", real.read_bytes(), 0o755)
    ctx.file("rootfs/etc/docker/registry/config.yml", (HERE / "registry-config.yml").read_bytes())
    ctx.dir("rootfs/var/lib/registry")
    ctx.dir("rootfs/tmp", 0o1777)
    return ctx.bytes()


def linked_libraries(ldd_output: str) -> list[str]:
    """Absolute library paths from `ldd` output (pure)."""
    libs = []
    for line in ldd_output.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
        else:
            target = line.split(" (")[0].strip()
        if target.startswith("/"):
            libs.append(target)
    return libs


# Building -------------------------------------------------------------------------------------
def _client(docker_host: str) -> Any:
    import docker

    return docker.APIClient(base_url=docker_host, timeout=600)


def _exists(api: Any, ref: str) -> bool:
    import docker.errors

    try:
        api.inspect_image(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _build(api: Any, ref: str, context: bytes) -> None:
    log.debug("building %s (%d bytes of context)", ref, len(context))
    error = None
    for chunk in api.build(fileobj=io.BytesIO(context), custom_context=True, tag=ref, rm=True,
                           forcerm=True, decode=True, pull=False):  # fmt: skip
        if "error" in chunk:
            error = str(chunk["error"]).strip()
    if error:
        raise TvdeployError(f"building {ref} in the build engine failed: {error}")


def build_images(lab_dir: Path, versions: list[str], small: bool = False,
                 reporter: Reporter | None = None, large_layer: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Build the stand-ins of *versions*; with *large_layer* (bytes) also LARGE_SERVICE's
    large-layer variant in both versions (and version 1 of the others: its releases use it)."""
    from tvdeploy.lab import engine
    from tvdeploy.lab.up import load_lab

    rep = reporter or NullReporter()
    t0 = time.monotonic()
    layout, st = load_lab(lab_dir)
    if not engine.running(st.engine, layout):
        raise TvdeployError(f"{layout.dir}: the build engine is not running (tvdeploy lab up --dir {layout.dir})")
    api = _client(layout.docker_host)
    size = "small" if small else "full"
    built: list[str] = []
    plan: list[tuple[str, Any]] = [(base_ref(size), lambda: base_context(size))]
    plan += [(deps_ref(f, size), lambda f=f: deps_context(f, size)) for f in catalog.FAMILIES]
    # Base and deps only when missing: rebuilding them would give new layer digests.
    first = [(ref, make) for ref, make in plan if not _exists(api, ref)]
    todo: list[tuple[str, Any]] = []
    for version in versions:
        todo += [(catalog.image_ref(s, version), lambda s=s, v=version: app_context(s, v, size))
                 for s in catalog.SERVICES]  # fmt: skip
    if "2" in versions:
        todo.append((catalog.broken_ref(), lambda: app_context(catalog.BROKEN_SERVICE, "2", size, broken=True)))
    if large_layer is not None:
        todo += [(catalog.large_ref(v), lambda v=v: large_context(v, size, large_layer))
                 for v in catalog.LARGE_VERSIONS]  # fmt: skip
    todo.append((catalog.registry_ref(), registry_context))
    rep.task("images", f"building {len(first) + len(todo)} images", total=len(first) + len(todo))

    def one(item: tuple[str, Any]) -> None:
        ref, make = item
        _build(api, ref, make())
        built.append(ref)
        rep.advance("images", description=f"built {ref}")

    for item in first:  # deps build FROM base: in order
        one(item)
    # App images are independent; a few builds at once keep the engine busy between commits.
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(one, todo))
    rep.done("images")
    release_files = write_release_specs(layout.dir, api)
    images = [catalog.image_ref(s, v) for v in versions for s in catalog.SERVICES] + [catalog.registry_ref()]
    if "2" in versions:
        images.append(catalog.broken_ref())
    if large_layer is not None:
        images += [catalog.large_ref(v) for v in catalog.LARGE_VERSIONS]
    return {
        "docker_host": layout.docker_host,
        "size": size,
        "images": images,
        "built": built,
        "release_files": [str(p) for p in release_files],
        "seconds": round(time.monotonic() - t0, 2),
    }


def write_release_specs(lab_dir: Path, api: Any) -> list[Path]:
    """release-vV.yaml for each version whose 18 images exist; release-broken.yaml with v2;
    release-large-vV.yaml when the large-layer variant exists."""
    import yaml

    from tvdeploy.state import write_atomic

    written = []
    for version in catalog.VERSIONS:
        specs = [(f"release-v{version}.yaml", catalog.release_spec(version))]
        if version == "2":
            specs.append(("release-broken.yaml", catalog.release_spec(version, broken=True)))
        specs.append((f"release-large-v{version}.yaml", catalog.large_release_spec(version)))
        for name, spec in specs:
            if all(_exists(api, ref) for ref in spec["images"].values()):
                header = "# Release spec of the lab's stand-in images (tvdeploy lab images).\n"
                body = header + yaml.safe_dump(spec, sort_keys=False)
                write_atomic(lab_dir / name, body.encode(), mode=0o644)
                written.append(lab_dir / name)
    return written
