"""``swarm bootstrap``: pre-flight (SSH), then the TLS apply when needed, with the swarm init started on the
first manager as soon as its API answers (``EarlyInit``: it overlaps the other nodes' dockerd
restarts), then the remaining swarm steps from fresh facts. Each phase is timed. The command
shows the survey and confirms through the two callbacks it passes in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tvdeploy.execute.site_lock import hold_if_swarm
from tvdeploy.execute.swarm_session import (
    Clients,
    EarlyInit,
    SwarmView,
    apply_swarm,
    early_init_step,
    open_clients,
    refuse_on_findings,
    refuse_on_problems,
    survey,
)
from tvdeploy.plan.preflight import blocking

if TYPE_CHECKING:
    from tvdeploy.config.site import Site
    from tvdeploy.connectors.ssh import SSHPool
    from tvdeploy.facts.swarm_model import SwarmFacts
    from tvdeploy.reporting import Reporter


@dataclass
class Bootstrapped:
    tls_changes: int = 0
    swarm_steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # total, preflight, tls, swarm
    facts: SwarmFacts | None = None  # nothing changed: the survey's facts still hold

    @property
    def changed(self) -> bool:
        return bool(self.tls_changes or self.swarm_steps)


def pending(view: SwarmView) -> bool:
    """Something to change (or not known yet: a node is unreachable, so no TLS plan)."""
    tls = view.tls_plan
    return bool(view.plan.steps) or tls is None or tls.changes


def needs_review(view: SwarmView) -> bool:
    """The survey is worth showing in full before going on: changes ahead or blocking findings."""
    return pending(view) or bool(blocking(view.findings))


def bootstrap(site: Site, pool: SSHPool, clients: Clients, reporter: Reporter, *,
              review: Callable[[SwarmView], None], confirm: Callable[[str], None]) -> Bootstrapped:
    """Pre-flight, TLS, swarm. *review* sees the survey before anything is refused or changed;
    *confirm* may refuse (raise) before the first change. The changes run under the deploy lock
    when the swarm exists already."""
    t0 = time.monotonic()
    view = survey(site, pool, clients, reporter)
    t_survey = time.monotonic()
    review(view)
    refuse_on_findings(view.findings)
    tls = view.tls_plan
    assert tls is not None  # no unreachable node (refused above), so the TLS plan exists
    if not tls.changes:
        refuse_on_problems(view.plan)  # with TLS pending, the APIs cannot answer yet
    if not tls.changes and not view.plan.steps:
        return Bootstrapped(facts=view.facts)
    confirm(f"bootstrap site {site.site.name}: {len(tls.steps)} TLS change(s), {len(view.plan.steps)} swarm step(s)?")
    with hold_if_swarm(site, "swarm bootstrap", reporter):  # none yet on a first bootstrap
        return _apply(site, pool, clients, reporter, view, t0, t_survey)


def _apply(site: Site, pool: SSHPool, clients: Clients, reporter: Reporter, view: SwarmView, t0: float,
           t_survey: float) -> Bootstrapped:
    from tvdeploy.execute.tls import apply_tls
    from tvdeploy.pki.certinfo import utcnow

    tls = view.tls_plan
    assert tls is not None
    t_tls = time.monotonic()
    early_steps = 0
    if tls.changes:
        init_step = early_init_step(site, view)
        early = EarlyInit(site, init_step, reporter) if init_step is not None else None
        try:
            apply_tls(site, tls, pool, reporter, utcnow(), on_ready=early.ready if early else None)
        except BaseException:
            if early is not None:
                early.join()  # never leave an init running behind the TLS error
            raise
        early_steps = early.finish() if early is not None else 0
        open_clients(site, clients)  # a new client certificate may have been issued
    t_swarm = time.monotonic()
    steps = early_steps + apply_swarm(site, clients, reporter)
    end = time.monotonic()
    return Bootstrapped(len(tls.steps), steps, {"total": end - t0, "preflight": t_survey - t0,
                                                "tls": t_swarm - t_tls, "swarm": end - t_swarm})
