"""What a release command deploys (a target), from the swarm's records:

- ``deploy RELEASE``: the images of RELEASE as imported;
- ``hotfix SERVICE --release RELEASE``: what runs now (the deployed release with its earlier
  hot-fixes) with SERVICE's digest taken from RELEASE — and only SERVICE may change;
- ``rollback [--to RELEASE]``: the previous release in the history (the newest successful
  deploy of another release), or the named one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tvdeploy.errors import RefusedError
from tvdeploy.release.records import HistoryRecord, ImportRecord, deployed

if TYPE_CHECKING:
    from tvdeploy.facts.services import StackFacts


@dataclass(frozen=True)
class Target:
    kind: str  # deploy | hotfix | rollback
    release: str | None = None  # deploy, rollback --to, hotfix --release
    service: str | None = None  # hotfix

    @property
    def command(self) -> str:
        if self.kind == "hotfix":
            return f"release hotfix {self.service} --release {self.release}"
        if self.kind == "rollback":
            return "release rollback" + (f" --to {self.release}" if self.release else "")
        return f"release deploy {self.release}"


def imported(site_name: str, facts: StackFacts, release_id: str) -> ImportRecord:
    for rec in facts.imports:
        if rec.release == release_id:
            return rec
    known = ", ".join(r.release for r in facts.imports[:8]) or "none"
    raise RefusedError(f"release {release_id} is not imported on site {site_name} (imported: {known}); "
                       "import its bundle first (tvdeploy bundle import)")


def resolve(site_name: str, facts: StackFacts, target: Target) -> ImportRecord:
    """The image set to deploy (an import record, possibly a synthetic one for a hot-fix)."""
    if target.kind == "deploy":
        assert target.release is not None
        return imported(site_name, facts, target.release)
    if target.kind == "rollback":
        return imported(site_name, facts, target.release or previous_release(site_name, facts.history))
    return hotfixed(site_name, facts, target)


def previous_release(site_name: str, history: list[HistoryRecord]) -> str:
    current = deployed(history)
    if current is None:
        raise RefusedError(f"site {site_name}: nothing deployed yet, so nothing to roll back to")
    for h in history:
        if h.succeeded and h.release != current.release:
            return h.release
    raise RefusedError(f"site {site_name}: no earlier release in the history than {current.release}; "
                       "name one with --to")


def hotfixed(site_name: str, facts: StackFacts, target: Target) -> ImportRecord:
    assert target.release is not None and target.service is not None
    current = deployed(facts.history)
    if current is None:
        raise RefusedError(f"site {site_name}: nothing deployed yet; a hot-fix goes on top of a deployed release "
                           "(tvdeploy release deploy)")
    source = imported(site_name, facts, target.release)
    if target.service not in source.images:
        raise RefusedError(f"release {source.release} has no image for service {target.service}")
    if target.service not in current.services:
        raise RefusedError(f"service {target.service} is not part of the deployed release {current.release}")
    base = next((r for r in facts.imports if r.release == current.release), None)
    images = {k: v.digest for k, v in current.services.items()}
    images[target.service] = source.images[target.service]
    repos = {**(base.repositories if base else {}), target.service: source.repository(target.service)}
    return replace(base or source, release=current.release, sequence=current.sequence, images=images,
                   repositories=repos)
