"""The release planner (pure): desired specs vs observed -> create/update/remove/noop with named
changes, drift, swarm objects to create, refusals."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tvdeploy.plan.release import Observed, differences, plan_release


def spec(image: str = "r:5000/trueverit/a@sha256:" + "1" * 64, replicas: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "Name": "trueverit_a", "Labels": {"io.tvdeploy.service": "a"},
        "TaskTemplate": {"ContainerSpec": {"Image": image, "Env": extra.get("env", []), "ReadOnly": True,
                                           "Mounts": extra.get("mounts", []),
                                           "Secrets": [{"SecretName": "s1", "File": {"Name": "s"}}]},
                         "Networks": [{"Target": "tv-backend", "Aliases": ["a"]}]},
        "Mode": {"Replicated": {"Replicas": replicas}},
        "EndpointSpec": {"Mode": "vip", "Ports": []},
    }


def live_of(desired: dict[str, Any]) -> dict[str, Any]:
    """What the engine returns: our keys plus defaults, IDs mapped back to names, empties dropped."""
    live = copy.deepcopy(desired)
    live["TaskTemplate"]["ContainerSpec"]["Isolation"] = "default"
    live["TaskTemplate"]["ForceUpdate"] = 0
    live["TaskTemplate"]["ContainerSpec"].pop("Env")
    live["EndpointSpec"] = {"Mode": "vip"}
    live["UpdateConfig"] = {"Parallelism": 1}
    return live


def observed(specs: dict[str, dict[str, Any]], drifted: set[str] = frozenset(), **kw: Any) -> Observed:
    from tvdeploy.plan.release import digest_of

    return Observed(specs=specs, digests={k: digest_of(v) for k, v in specs.items()}, drifted=frozenset(drifted),
                    secrets=frozenset(kw.get("secrets", {"s1"})), configs=frozenset(kw.get("configs", set())),
                    networks=frozenset(kw.get("networks", {"tv-backend"})))


def plan(desired: dict[str, Any], obs: Observed, **kw: Any) -> Any:
    tiers = {k: "app" for k in desired}
    return plan_release("r2", 2, desired, tiers, obs, kw.get("secrets", ["s1"]), kw.get("configs", []),
                        kw.get("networks", ["tv-backend"]))


def test_engine_defaults_and_empty_values_are_not_changes() -> None:
    d = spec()
    assert differences(d, live_of(d)) == []
    p = plan({"a": d}, observed({"a": live_of(d)}))
    assert not p.changes and [s.action for s in p.steps] == ["noop"]


@pytest.mark.parametrize(("change", "name"), [
    (lambda s: s["TaskTemplate"]["ContainerSpec"].update(Image="r:5000/trueverit/a@sha256:" + "2" * 64), "image"),
    (lambda s: s["TaskTemplate"]["ContainerSpec"].update(Env=["A=1"]), "env"),
    (lambda s: s.update(Mode={"Replicated": {"Replicas": 3}}), "replicas"),
    (lambda s: s["TaskTemplate"].update(Networks=[{"Target": "tv-data", "Aliases": ["a"]}]), "networks"),
    (lambda s: s["TaskTemplate"]["ContainerSpec"]["Secrets"][0].update(SecretName="s2"), "secrets"),
    (lambda s: s.update(Mode={"Global": {}}), "replicas"),
])
def test_each_kind_of_change_is_named(change: Any, name: str) -> None:
    live = live_of(spec())
    desired = spec()
    change(desired)
    p = plan({"a": desired}, observed({"a": live}), secrets=["s1", "s2"])
    step = p.steps[0]
    assert step.action == "update" and name in step.changes


def test_a_mount_added_by_hand_is_a_change_back() -> None:
    live = live_of(spec())
    live["TaskTemplate"]["ContainerSpec"]["Mounts"] = [{"Type": "bind", "Source": "/var/run/docker.sock",
                                                        "Target": "/var/run/docker.sock"}]
    p = plan({"a": spec()}, observed({"a": live}))
    assert p.steps[0].action == "update" and "mounts" in p.steps[0].changes


def test_drift_without_a_visible_change_is_still_restored() -> None:
    d = spec()
    p = plan({"a": d}, observed({"a": live_of(d)}, drifted={"a"}))
    assert p.steps[0].action == "update" and p.steps[0].drift
    assert p.steps[0].changes == ("changed outside tvdeploy",)


def test_create_and_remove_with_digests() -> None:
    new = spec()
    old = live_of(spec(image="r:5000/trueverit/gone@sha256:" + "9" * 64))
    p = plan({"a": new}, observed({"gone": old}))
    actions = {s.service: (s.action, s.old_digest, s.new_digest) for s in p.steps}
    assert actions["a"] == ("create", None, "sha256:" + "1" * 64)
    assert actions["gone"] == ("remove", "sha256:" + "9" * 64, None)


def test_missing_objects_are_created_first_and_missing_networks_refuse() -> None:
    p = plan({"a": spec()}, observed({}, secrets=set(), networks=set()), secrets=["s1"], configs=["c1"])
    assert p.create_secrets == ["s1"] and p.create_configs == ["c1"]
    assert any("network tv-backend does not exist" in problem for problem in p.problems)


def test_an_image_by_tag_is_refused() -> None:
    p = plan({"a": spec(image="r:5000/trueverit/a:latest")}, observed({}))
    assert any("not pinned by digest" in problem for problem in p.problems)


def test_plan_json_shape() -> None:
    p = plan({"a": spec()}, observed({}))
    doc = p.to_json()
    assert doc["changes"] is True and doc["services"][0]["action"] == "create"
    assert set(doc["services"][0]) >= {"service", "action", "old_digest", "new_digest", "changes", "drift"}
