"""The SSH connections of a command. Recording a new host key (``--trust-new-hosts``) is a trust
decision like any other mutation: it is written to the site's audit log (node, address, key type,
fingerprint) before the key goes into ``ssh.known_hosts``; no record, no trust."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvdeploy.connectors.ssh import SSHPool, StreamFn

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.reporting import Reporter

HOST_KEY_EVENT = "ssh.host-key.trust"


def open_pool(site: Site, *, trust_new_hosts: bool = False, reporter: Reporter | None = None,
              stream: StreamFn | None = None) -> SSHPool:
    def audit(node: str, address: str, key_type: str, fingerprint: str) -> None:
        from tvdeploy.audit.recorder import record

        record(site, HOST_KEY_EVENT, objects=[{"type": "host-key", "name": node, "address": address,
                                               "key_type": key_type, "fingerprint": fingerprint}])

    return SSHPool(site, trust_new_hosts=trust_new_hosts, reporter=reporter, stream=stream,
                   on_new_host_key=audit)
