"""The deploy lock: a lease stored in the swarm, so two operators on two machines cannot both
change a site, and a lease whose holder died cannot block it for good.

The lease is the swarm config ``tvdeploy-lock``. Taking a free lock is creating that config:
the name is unique in the swarm's raft store, so of two creates exactly one wins. Its state is
in its labels (owner key id, host, command, pid, start, time to live, lease id), the only part
of a config the API lets one update, and updates carry the config's version: renewing and
taking over an expired lease are compare-and-swap, so two takers cannot both win either.
Expiry is judged on the manager's clock (``UpdatedAt`` + ttl against ``/info`` SystemTime), never
on the operators' clocks. A renewal thread keeps the lease while the command runs; leaving the
``with`` block (done, error, Ctrl-C) removes it; a SIGKILLed holder's lease expires.

    with hold(site, "release deploy lab-v2", reporter):
        ...
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tvdeploy.errors import RefusedError

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

log = logging.getLogger(__name__)

NAME = "tvdeploy-lock"
PREFIX = "io.tvdeploy.lock."
DEFAULT_TTL = 15 * 60
TTL_ENV = "TVDEPLOY_LOCK_TTL_SECONDS"  # shorter leases for tests and rehearsals


def ttl_seconds() -> int:
    try:
        return max(5, int(os.environ.get(TTL_ENV, DEFAULT_TTL)))
    except ValueError:
        return DEFAULT_TTL


@dataclass(frozen=True)
class Lease:
    config_id: str
    version: int
    labels: dict[str, str]
    updated: datetime  # manager clock
    now: datetime  # manager clock when read

    @property
    def ttl(self) -> int:
        return int(self.labels.get(PREFIX + "ttl", DEFAULT_TTL))

    @property
    def expires(self) -> datetime:
        return self.updated + timedelta(seconds=self.ttl)

    @property
    def expired(self) -> bool:
        return self.now >= self.expires

    def to_json(self) -> dict[str, Any]:
        lab = self.labels
        return {"held": not self.expired, "owner": {"key_id": lab.get(PREFIX + "key_id", ""),
                                                    "host": lab.get(PREFIX + "host", ""),
                                                    "pid": int(lab.get(PREFIX + "pid", "0") or 0)},
                "command": lab.get(PREFIX + "command", ""), "started": lab.get(PREFIX + "started", ""),
                "expires": self.expires.isoformat(timespec="seconds"), "expired": self.expired}

    def describe(self) -> str:
        doc = self.to_json()
        o = doc["owner"]
        return (f"key {o['key_id'][:16]} on {o['host']} (pid {o['pid']}, `{doc['command']}`) since "
                f"{doc['started']}, until {doc['expires']}")


def _time(text: str) -> datetime:
    """Docker's RFC 3339 with nanoseconds -> aware datetime (microseconds)."""
    text = text.strip().replace("Z", "+00:00")
    if "." in text:
        head, frac = text.split(".", 1)
        digits = frac[:len(frac) - len(frac.lstrip("0123456789"))]  # the leading digits only
        tz = frac[len(digits):] or "+00:00"
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    return datetime.fromisoformat(text).astimezone(UTC)


def read(api: Any) -> Lease | None:
    import docker.errors

    try:
        cfg = api.inspect_config(NAME)
    except docker.errors.NotFound:
        return None
    now = _time(str(api.info().get("SystemTime")))
    return Lease(cfg["ID"], int(cfg["Version"]["Index"]), dict(cfg["Spec"].get("Labels") or {}),
                 _time(str(cfg.get("UpdatedAt") or cfg.get("CreatedAt"))), now)


def owner_labels(key_id: str, command: str, ttl: int) -> dict[str, str]:
    return {PREFIX + "key_id": key_id, PREFIX + "host": socket.gethostname(), PREFIX + "pid": str(os.getpid()),
            PREFIX + "command": command[:200], PREFIX + "ttl": str(ttl), PREFIX + "lease": secrets.token_hex(8),
            PREFIX + "started": datetime.now(UTC).isoformat(timespec="seconds")}


def _update(api: Any, lease: Lease, labels: dict[str, str]) -> None:
    """Compare-and-swap of the labels (the config's version must still be *lease.version*)."""
    spec = api.inspect_config(lease.config_id)["Spec"]
    spec["Labels"] = labels
    url = api._url("/configs/{0}/update", lease.config_id)
    api._raise_for_status(api._post_json(url, data=spec, params={"version": lease.version}))


def acquire(api: Any, site_name: str, key_id: str, command: str, reporter: Reporter) -> dict[str, str]:
    import docker.errors

    labels = owner_labels(key_id, command, ttl_seconds())
    try:
        api.create_config(NAME, b"tvdeploy deploy lock\n", labels=labels)
        return labels
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
    held = read(api)
    if held is None:  # released between our create and our read: try once more
        api.create_config(NAME, b"tvdeploy deploy lock\n", labels=labels)
        return labels
    if not held.expired and not abandoned_here(held, key_id):
        raise RefusedError(f"site {site_name}: the deploy lock is held by {held.describe()}; wait for it, or "
                           f"break it with tvdeploy release unlock SITE --force")
    try:
        _update(api, held, labels)
    except docker.errors.APIError:
        raise RefusedError(f"site {site_name}: another operator took over the expired deploy lock first") from None
    why = "expired" if held.expired else "abandoned (its process on this machine is gone)"
    reporter.warn(f"took over an {why} deploy lock: {held.describe()}")
    return labels


def abandoned_here(held: Lease, key_id: str) -> bool:
    """A lease of this operator on this machine whose process is gone (killed, crashed): no need
    to wait for its expiry. A reused pid only makes us wait for the expiry: the safe side."""
    lab = held.labels
    if lab.get(PREFIX + "key_id") != key_id or lab.get(PREFIX + "host") != socket.gethostname():
        return False
    try:
        os.kill(int(lab.get(PREFIX + "pid", "0") or 0), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def renew(api: Any, lease_id: str) -> bool:
    """Bump UpdatedAt (the expiry) if the lease is still ours."""
    held = read(api)
    if held is None or held.labels.get(PREFIX + "lease") != lease_id:
        return False
    _update(api, held, dict(held.labels))
    return True


def release(api: Any, lease_id: str) -> None:
    import docker.errors

    held = read(api)
    if held is not None and held.labels.get(PREFIX + "lease") == lease_id:
        try:
            api.remove_config(held.config_id)
        except docker.errors.NotFound:
            pass


@contextmanager
def hold(site: Site, command: str, reporter: Reporter) -> Iterator[None]:
    """The lease for the duration of the block, on a client of its own (the renewal thread must
    not share a connection with the command's own calls)."""
    from tvdeploy.audit.recorder import signing_key
    from tvdeploy.facts.services import manager_client

    client = manager_client(site)
    try:
        with _held(site, client.api, signing_key()[1], command, reporter):
            yield
    finally:
        client.close()


@contextmanager
def _held(site: Site, api: Any, key_id: str, command: str, reporter: Reporter) -> Iterator[None]:
    labels = acquire(api, site.site.name, key_id, command, reporter)
    lease_id = labels[PREFIX + "lease"]
    stop = threading.Event()

    def keep() -> None:
        interval = max(1.0, min(60.0, ttl_seconds() / 3))
        while not stop.wait(interval):
            try:
                if not renew(api, lease_id):
                    reporter.warn("the deploy lock was broken by another operator (tvdeploy release unlock)")
                    return
            except Exception as exc:  # noqa: BLE001 - a missed renewal is retried; expiry is the bound
                log.debug("lock renewal failed: %s", exc)

    thread = threading.Thread(target=keep, name="tvdeploy-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        try:
            release(api, lease_id)
        except Exception as exc:  # noqa: BLE001 - the lease then expires on its own
            reporter.warn(f"the deploy lock could not be released now ({str(exc)[:120]}); it expires by itself")


def force_unlock(api: Any) -> Lease | None:
    """Remove the lease whoever holds it; returns what it was (None: no lock)."""
    held = read(api)
    if held is not None:
        api.remove_config(held.config_id)
    return held


def status(site: Site) -> dict[str, Any]:
    """``{"held", "owner": {key_id, host, pid}, "command", "started", "expires"}``."""
    from tvdeploy.facts.services import manager_client

    client = manager_client(site)
    try:
        held = read(client.api)
    finally:
        client.close()
    if held is None:
        return {"held": False, "owner": None, "command": None, "started": None, "expires": None}
    return held.to_json()


def break_lock(site: Site) -> str | None:
    """`release unlock --force`: remove the lease, and say whose it was in the audit log."""
    from tvdeploy.audit.recorder import prepare, record
    from tvdeploy.facts.services import manager_client

    prepare()
    client = manager_client(site)
    try:
        held = force_unlock(client.api)
    finally:
        client.close()
    if held is None:
        return None
    doc = held.to_json()
    record(site, "release.unlock", objects=[{"type": "lock", "name": NAME, "key_id": doc["owner"]["key_id"],
                                             "host": doc["owner"]["host"], "command": doc["command"],
                                             "expires": doc["expires"]}])
    return held.describe()
