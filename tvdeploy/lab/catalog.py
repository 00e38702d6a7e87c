"""The stand-in Trueverit platform: 18 services, their families, the data path (pure).

A family shares a dependency layer (like a Python runtime or an nginx build); the upstream of a
service is the next hop of the data path that its /health checks.
"""

from __future__ import annotations

from typing import Any

SERVICES: dict[str, str] = {
    "cloud": "python", "edge": "python", "iot_flow": "python", "business_analytics": "python",
    "backup_engine": "python", "cloud_wsgi": "python", "edge_wsgi": "python",
    "nginx_cloud": "nginx", "nginx_edge": "nginx",
    "mqtt_broker": "broker", "timeseries_db": "database", "postgres_db": "database",
    "auth": "python", "alerting": "python", "scheduler": "python", "report_engine": "python",
    "notification": "python", "device_registry": "python",
}  # fmt: skip
FAMILIES = ("python", "nginx", "broker", "database")
UPSTREAM = {"edge": "iot_flow:8080", "iot_flow": "cloud:8080"}
BROKEN_SERVICE = "business_analytics"  # fails /health in release-broken (not on the data path)
REPOSITORY = "trueverit"
REGISTRY_SERVICE = "registry"
REGISTRY_TAG = "2.8"
VERSIONS = ("1", "2")
# The large-layer variant (lab images --large-layer): LARGE_SERVICE gets an application layer of
# tens of MiB of files; its version 2 changes one file of about 1 MiB in that layer, as a real
# hot-fix does. Every other service stays at version 1 in both releases.
LARGE_SERVICE = "cloud"
LARGE_VERSIONS = ("1", "2")
LARGE_FILE = 1024 * 1024  # each file of the large layer; one of them changes in version 2


def image_ref(service: str, version: str) -> str:
    return f"{REPOSITORY}/{service}:{version}"


def broken_ref() -> str:
    return image_ref(BROKEN_SERVICE, "2-broken")


def registry_ref() -> str:
    return f"{REPOSITORY}/{REGISTRY_SERVICE}:{REGISTRY_TAG}"


def large_ref(version: str) -> str:
    return image_ref(LARGE_SERVICE, f"large-{version}")


def large_release_spec(version: str) -> dict[str, Any]:
    """release-large-vV.yaml: version 1 of every service, LARGE_SERVICE in its large variant."""
    spec = release_spec("1")
    spec["images"][LARGE_SERVICE] = large_ref(version)
    spec.update(release=f"lab-large-v{version}", sequence=int(version))
    return spec


def large_files(total: int, version: str) -> dict[str, tuple[str, int]]:
    """The large layer's files: path -> (random seed, size). ``total`` bytes in LARGE_FILE
    pieces; the middle file's seed carries the version (the hot-fix), the others do not."""
    count = max(2, total // LARGE_FILE)
    changed = count // 2
    return {f"app/lib/module-{i:03d}.bin": (f"large-{i}-v{version}" if i == changed else f"large-{i}", LARGE_FILE)
            for i in range(count)}


def release_spec(version: str, broken: bool = False) -> dict[str, Any]:
    """A release spec (ARCHITECTURE.md): {release, sequence, images: {service: repo:tag}}."""
    images = {svc: image_ref(svc, version) for svc in SERVICES}
    if broken:
        images[BROKEN_SERVICE] = broken_ref()
    images[REGISTRY_SERVICE] = registry_ref()
    sequence = int(version) + (1 if broken else 0)
    release = f"lab-v{version}" + ("-broken" if broken else "")
    return {"release": release, "sequence": sequence, "images": images}


def service_env(service: str, version: str, broken: bool = False) -> str:
    return (
        f"SERVICE={service}\nVERSION={version}\nFAMILY={SERVICES[service]}\n"
        f"UPSTREAM=${{UPSTREAM-{UPSTREAM.get(service, '')}}}\nBROKEN={1 if broken else 0}\nPORT=${{PORT:-8080}}\n"
    )
