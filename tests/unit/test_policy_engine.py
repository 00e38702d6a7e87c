"""Engine and swarm rules over Docker API documents as the engine returns them, and the
converters that let the stack rules read live service specs and standalone containers."""

from __future__ import annotations

from tvdeploy.facts.policy_engine import container_to_compose, service_to_compose, standalone_stack
from tvdeploy.policy import engine
from tvdeploy.policy.model import EngineFacts, PolicyFacts, SwarmFacts
from tvdeploy.policy.packs import select

SERVICE = {"ID": "s1", "Spec": {
    "Name": "cloud",
    "TaskTemplate": {
        "ContainerSpec": {"Image": "10.0.0.11:5000/trueverit/cloud@sha256:" + "a" * 64, "User": "65534:65534",
                          "ReadOnly": True, "CapabilityDrop": ["ALL"], "Env": ["DB_PASSWORD=x", "MODE=prod"],
                          "Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock",
                                      "Target": "/var/run/docker.sock", "ReadOnly": True}],
                          "Healthcheck": {"Test": ["CMD", "true"]}},
        "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 268435456, "Pids": 0}},
        "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
        "Networks": [{"Target": "n1"}]},
    "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp", "PublishMode": "host"}]}}}

PRIV = {"Id": "c1", "Name": "/stray", "Image": "sha256:" + "b" * 64,
        "State": {"Status": "created"}, "AppArmorProfile": "",
        "Config": {"Image": "busybox", "User": "", "Env": [], "Labels": {}},
        "HostConfig": {"Privileged": True, "NetworkMode": "host", "PidMode": "host", "CapAdd": ["SYS_ADMIN"],
                       "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}, "Memory": 0},
        "Mounts": [{"Type": "bind", "Source": "/etc", "Destination": "/host-etc", "RW": True}]}
TASK = {"Id": "c2", "Name": "/cloud.1.x", "Image": "sha256:" + "a" * 64, "State": {"Status": "running"},
        "AppArmorProfile": "docker-default",
        "Config": {"Image": "x", "Labels": {"com.docker.swarm.service.id": "s1"}},
        "HostConfig": {"NetworkMode": "default", "SecurityOpt": None}}


def test_service_spec_converts_to_compose() -> None:
    name, svc = service_to_compose(SERVICE, {"n1": "tv-backend"})
    assert name == "cloud" and svc["networks"] == ["tv-backend"] and svc["read_only"] is True
    assert svc["deploy"]["resources"]["limits"] == {"cpus": 0.5, "memory": 268435456}
    assert svc["deploy"]["restart_policy"] == {"condition": "any", "max_attempts": 0}
    assert svc["ports"][0]["published"] == 8080 and svc["volumes"][0]["source"] == "/var/run/docker.sock"


def test_standalone_containers_only() -> None:
    eng = EngineFacts("n2", {"Swarm": {"LocalNodeState": "active"}, "SecurityOptions": ["name=apparmor"]},
                      {"Version": "20.10.24"}, (PRIV, TASK), ())
    stack = standalone_stack(eng)
    assert stack is not None and list(stack.compose["services"]) == ["container stray"]
    _, c = container_to_compose(PRIV)
    assert c["cap_add"] == ["SYS_ADMIN"] and c["volumes"][0]["source"] == "/etc"


def test_engine_rules_see_created_containers_on_every_node() -> None:
    eng = EngineFacts("n2", {"Swarm": {"LocalNodeState": "active"}, "SecurityOptions": ["name=apparmor"],
                             "LiveRestoreEnabled": False}, {"Version": "20.10.24"}, (PRIV, TASK), ())
    name, svc = service_to_compose(SERVICE, {"n1": "tv-backend"})
    from tvdeploy.policy.model import StackFacts

    stacks = (StackFacts({"services": {name: svc}}, "live", "swarm"), standalone_stack(eng))
    facts = PolicyFacts(stacks=tuple(s for s in stacks if s), engines={"n2": eng})
    result = engine.run(select(["cis-docker"], None), facts, ("engine", "stack"), [], "high")
    fails = {(f.rule, f.object, f.node) for f in result.findings if f.status == "fail"}
    for rid in ("TVD-301", "TVD-302", "TVD-308"):
        assert (rid, "container stray", "n2") in fails, rid
    assert ("TVD-301", "container cloud.1.x", "n2") not in fails
    assert ("TVD-104", "container stray", "n2") in fails and ("TVD-111", "container stray", "n2") in fails
    assert ("TVD-112", "cloud", None) in fails and ("TVD-102", "cloud", None) in fails
    # 5.15 on the service spec: condition any / MaxAttempts 0 is unbounded (docker-bench passes it)
    assert ("TVD-109", "cloud", None) in fails
    statuses = {f.rule: f.status for f in result.findings if f.node == "n2" and f.object == "node n2"}
    assert statuses["TVD-324"] == "not-applicable" and statuses["TVD-323"] == "not-applicable"
    assert statuses["TVD-325"] == "not-applicable"


def test_swarm_rules() -> None:
    nodes = tuple({"ID": f"m{i}", "Spec": {"Role": "manager"}, "Description": {"Hostname": f"m{i}"},
                   "ManagerStatus": {"Reachability": "unreachable" if i == 2 else "reachable"}} for i in (1, 2))
    swarm = SwarmFacts({"Spec": {"EncryptionConfig": {"AutoLockManagers": False},
                                 "CAConfig": {"NodeCertExpiry": 7_776_000 * 10**9 * 2}}},
                       nodes, ({"Name": "ingress", "Options": {}}, {"Name": "tv-data", "Options": {"encrypted": ""}}),
                       "2027-01-01T00:00:00Z", 30)
    result = engine.run(select(["cis-docker"], None), PolicyFacts(swarm=swarm), ("swarm",), [], "high")
    status = {(f.rule, f.object): f.status for f in result.findings}
    assert status[("TVD-501", "swarm")] == "fail"  # 2 managers: even
    assert status[("TVD-502", "manager m2")] == "fail" and status[("TVD-502", "manager m1")] == "pass"
    assert status[("TVD-503", "swarm")] == "fail" and status[("TVD-504", "swarm")] == "fail"
    assert status[("TVD-505", "swarm root CA")] == "fail"
    assert status[("TVD-506", "network ingress")] == "fail" and status[("TVD-506", "network tv-data")] == "pass"


def test_live_service_gets_its_image_healthcheck_from_a_task() -> None:
    from tvdeploy.facts.policy_engine import with_image_healthchecks
    from tvdeploy.policy.model import StackFacts

    spec = {"Spec": {"Name": "edge", "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}}
    name, svc = service_to_compose(spec, {})
    task = {"Config": {"Labels": {"com.docker.swarm.service.name": "edge"},
                       "Healthcheck": {"Test": ["CMD-SHELL", "wget -q localhost:8080/health"]}}}
    eng = EngineFacts("n1", {}, {}, (task,), ())
    live = with_image_healthchecks(StackFacts({"services": {name: svc}}, "live", "swarm"), {"n1": eng})
    assert live.compose["services"]["edge"]["healthcheck"]["test"][0] == "CMD-SHELL"
