"""Image rules (TVD-2xx) and bundle rules (TVD-0xx): read offline from the bundle itself."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from tvdeploy.policy.model import Check, ImageFacts, PolicyFacts, failed, not_applicable, passed
from tvdeploy.policy.registry import rule
from tvdeploy.policy.rules_stack import SECRET_NAME

UPDATE_ALONE = re.compile(r"\b(apt-get|apt|yum|dnf|apk)\s+(update|upgrade)\b")
INSTALL = re.compile(r"\b(install|add)\b")


def _images(facts: PolicyFacts) -> Iterator[ImageFacts]:
    yield from sorted(facts.images or (), key=lambda i: i.service)


def _ok(img: ImageFacts, evidence: str = "") -> Check:
    return passed(img.service, evidence, location=img.reference)


def _bad(img: ImageFacts, message: str, evidence: str) -> Check:
    return failed(img.service, message, evidence, location=img.reference)


@rule("TVD-201", "Images run as a non-root user", "image", "high", cis=("4.1",),
      remediation="Add a user in the image and end the Dockerfile with USER <uid>.")
def image_user(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        root = img.user.split(":")[0] in ("", "0", "root")
        yield _bad(img, "image runs as root", f"config.User: {img.user or 'not set'}") if root \
            else _ok(img, f"config.User: {img.user}")


@rule("TVD-202", "Images have a HEALTHCHECK", "image", "low", cis=("4.6",),
      remediation="Add a HEALTHCHECK instruction (or a healthcheck in the stack).")
def image_healthcheck(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        hc = img.healthcheck
        yield _ok(img, f"config.Healthcheck.Test: {list(hc)}") if hc and hc[0] != "NONE" \
            else _bad(img, "image has no healthcheck", f"config.Healthcheck: {list(hc) if hc else 'not set'}")


def _unreadable(img: ImageFacts) -> Check | None:
    return failed(img.service, f"layers could not be read: {img.unreadable}", "", location=img.reference) \
        if img.unreadable else None


@rule("TVD-203", "No setuid or setgid files in images", "image", "high", cis=("4.8",),
      remediation="Remove the setuid/setgid bits in the Dockerfile (chmod a-s) or the files themselves.")
def setuid(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        bad = _unreadable(img)
        yield bad or (_bad(img, f"{len(img.setuid_files)} setuid/setgid file(s)", ", ".join(img.setuid_files[:10]))
                      if img.setuid_files else _ok(img))


@rule("TVD-204", "No private keys or credentials in image layers", "image", "critical", cis=("4.10",),
      remediation="Remove the file from every layer (a later layer deleting it does not help); rotate "
                  "the key; give it to the service as a swarm secret.")
def layer_secrets(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        bad = _unreadable(img)
        found = [f"{path} ({why})" for path, why in img.secret_files]
        yield bad or (_bad(img, f"{len(found)} credential file(s) in layers", ", ".join(found[:10]))
                      if found else _ok(img))


@rule("TVD-205", "Image size is within the budget", "image", "medium",
      remediation="Slim the image: a smaller base, multi-stage builds, no build tools in the result.",
      params={"max_mb": 300})
def size_budget(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    budget = int(params["max_mb"]) * 1024 * 1024
    for img in _images(facts):
        ev = f"{img.size / 1048576:.1f} MiB (budget {params['max_mb']} MiB)"
        yield _bad(img, "image is over the size budget", ev) if img.size > budget else _ok(img, ev)


@rule("TVD-206", "No secrets in the image's environment", "image", "high", cis=("4.10",),
      remediation="Remove ENV lines that carry secrets; use swarm secrets at run time.")
def image_env(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        bad = [n for n in img.env_names if SECRET_NAME.search(n) and not n.upper().endswith("_FILE")]
        yield _bad(img, "secret-looking variable in the image config", f"config.Env: {bad}") if bad else _ok(img)


@rule("TVD-207", "Update instructions are not used alone", "image", "low", cis=("4.7",),
      remediation="Combine the package index update with the install in one RUN instruction.")
def update_alone(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        bad = [h for h in img.history if UPDATE_ALONE.search(h) and not INSTALL.search(h)]
        yield _bad(img, "package index update in a layer of its own", bad[0][:200]) if bad else _ok(img)


@rule("TVD-208", "COPY is used instead of ADD", "image", "low", cis=("4.9",),
      remediation="Use COPY; fetch remote files in the build stage with checksums.")
def add_instruction(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        # The first entry is the base's root filesystem (ADD file:... in /): expected.
        bad = [h for h in img.history[1:] if re.search(r"\bADD\b", h)]
        yield _bad(img, "ADD instruction in the build history", bad[0][:200]) if bad else _ok(img)


@rule("TVD-209", "No SSH server in images", "image", "medium", cis=("5.7",),
      remediation="Remove the SSH server from the image; use docker exec over the TLS API instead.")
def no_sshd(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    for img in _images(facts):
        yield _bad(img, "image contains an SSH server", ", ".join(img.sshd_files)) if img.sshd_files else _ok(img)


@rule("TVD-001", "Bundle signed by the trust root's threshold", "bundle", "critical",
      cis=("4.5", "4.12"),
      remediation="Sign the bundle with enough distinct trusted keys (tvdeploy bundle sign) and give "
                  "the site's trust root.")
def bundle_signed(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    b = facts.bundle
    if b is None:
        return
    ev = f"{len(b.signers)} of {b.threshold} trusted signatures" + (f"; {b.problems[0]}" if b.problems else "")
    yield failed(b.path, b.error, ev, location=b.path) if b.error else passed(b.path, ev, location=b.path)


@rule("TVD-002", "Trust root does not expire soon", "bundle", "medium",
      remediation="Publish the next trust root version (tvdeploy trust add-signer/revoke with a later "
                  "--expires) before this one expires.", params={"days": 30})
def trust_expiry(facts: PolicyFacts, params: Mapping[str, Any]) -> Iterator[Check]:
    b = facts.bundle
    if b is None:
        return
    if b.days_left is None:
        yield not_applicable(b.trust_root or b.path, "no trust root was read")
    elif b.days_left < int(params["days"]):
        yield failed(b.trust_root, f"trust root expires in {b.days_left} days", f"expires {b.trust_expires}",
                     location=b.trust_root)
    else:
        yield passed(b.trust_root, f"expires {b.trust_expires} ({b.days_left} days)", location=b.trust_root)
