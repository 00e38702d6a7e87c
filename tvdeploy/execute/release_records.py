"""Write release records into the swarm (configs: replicated by raft, readable by any manager).
See tvdeploy.release.records for what they hold and why they live there."""

from __future__ import annotations

import logging
import secrets as pysecrets
from typing import Any

from tvdeploy.release.records import (
    HISTORY_KIND,
    IMPORT_KIND,
    LABEL_KIND,
    HistoryRecord,
    ImportRecord,
    canonical,
    history_name,
    import_name,
)

log = logging.getLogger(__name__)


def write_history(api: Any, record: HistoryRecord) -> str:
    name = history_name(record.sequence, record.time, pysecrets.token_hex(4))
    api.create_config(name, canonical(record.to_json()),
                      labels={LABEL_KIND: HISTORY_KIND, "io.tvdeploy.release": record.release,
                              "io.tvdeploy.kind": record.kind, "io.tvdeploy.outcome": record.outcome})
    return name


def write_import(api: Any, record: ImportRecord) -> bool:
    """Record an import; False when this very import was recorded already."""
    import docker.errors

    name = import_name(record.sequence, record.manifest_sha256)
    try:
        api.create_config(name, canonical(record.to_json()),
                          labels={LABEL_KIND: IMPORT_KIND, "io.tvdeploy.release": record.release})
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            return False
        raise
    return True


def record_import_in_swarm(site: Any, record: ImportRecord, warn: Any) -> None:
    """After `bundle import`: the release becomes deployable from any operator machine. A failure
    here is a warning: the images are on the site, and the next import or deploy can tell."""
    from tvdeploy.errors import TvdeployError
    from tvdeploy.facts.services import manager_client

    try:
        client = manager_client(site)
    except TvdeployError as exc:
        warn(f"release {record.release} imported, but not recorded in the swarm: {exc.message}")
        return
    try:
        write_import(client.api, record)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        warn(f"release {record.release} imported, but not recorded in the swarm: {str(exc)[:200]}")
    finally:
        client.close()
