"""The Trueverit stack template (pure): every service pinned by digest, on its tiers only, with
a healthcheck, limits, a non-root user, secrets mounted (never in the environment); and the
data-driven cases in data/stack_render/ (values -> expectations or one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tvdeploy.errors import ConfigError
from tvdeploy.lab import catalog
from tvdeploy.release.records import ImportRecord
from tvdeploy.release.service_spec import build_specs
from tvdeploy.release.stack_render import deploy_waves, render

DATA = Path(__file__).parent / "data" / "stack_render"
CASES = sorted(DATA.glob("*.json"))
REGISTRY = "10.9.0.11:5000"
SECRET_VALUE = "planted-stack-secret-7f3a9c"
FRONT, BACK, DATA_NET = "tv-frontend", "tv-backend", "tv-data"


def digest(service: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(service.encode()).hexdigest()


RELEASE = ImportRecord("r1", 1, "a" * 64, "2026-12-02T00:00:00+00:00",
                       {s: digest(s) for s in [*catalog.SERVICES, "registry"]},
                       {s: f"trueverit/{s}" for s in catalog.SERVICES})


def make_site(tmp_path: Path, values: dict[str, Any] | None = None, publish_mode: str = "host",
              template: Path | None = None) -> Any:
    from tvdeploy.config.load import load_site

    (tmp_path / "stack_secret").write_text(SECRET_VALUE)
    doc = {
        "version": 1, "site": {"name": "unit"}, "network": {"subnet": "10.9.0.0/24"},
        "nodes": [{"name": "m1", "role": "manager", "address": "10.9.0.11", "zone": "core"},
                  {"name": "m2", "role": "manager", "address": "10.9.0.12", "zone": "core"},
                  {"name": "e1", "role": "manager", "address": "10.9.0.13", "zone": "edge"}],
        "ssh": {"known_hosts": "known_hosts"},
        "swarm": {"publish_mode": publish_mode, "encrypted_networks": False},
        "stack": {"values": values or {}, "secrets": {"trueverit": "file:stack_secret"},
                  **({"template": str(template)} if template else {})},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_site(path)


@pytest.fixture
def rendered(tmp_path: Path) -> Any:
    return render(make_site(tmp_path), RELEASE, REGISTRY)


def test_every_image_is_pinned_by_the_release_digest(rendered: Any) -> None:
    services = rendered.compose["services"]
    assert set(services) == set(catalog.SERVICES)
    for name, svc in services.items():
        assert svc["image"] == f"{REGISTRY}/trueverit/{name}@{digest(name)}"
    assert rendered.unused == ["registry"]


def test_tiers_fronts_apps_and_data_join_only_what_they_talk_to(rendered: Any) -> None:
    specs = build_specs(rendered.model, rendered.stack_name)

    def nets(name: str) -> set[str]:
        return {n["Target"] for n in specs[name]["TaskTemplate"]["Networks"]}

    assert nets("nginx_cloud") == {FRONT, BACK}
    assert nets("postgres_db") == {DATA_NET}
    assert nets("cloud") == {BACK, DATA_NET}
    assert nets("edge_wsgi") == {BACK}
    for name in catalog.SERVICES:
        tier = rendered.tiers[name]
        assert (FRONT in nets(name)) == (tier == "front")
        if tier == "data":
            assert nets(name) == {DATA_NET}
        aliases = {a for n in specs[name]["TaskTemplate"]["Networks"] for a in n["Aliases"]}
        assert aliases == {name}


def test_hardening_of_every_service(rendered: Any) -> None:
    for name, svc in rendered.compose["services"].items():
        assert svc["user"] == "65534:65534", name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert svc["healthcheck"]["test"][0] == "CMD", name
        limits = svc["deploy"]["resources"]["limits"]
        assert limits["memory"] and limits["cpus"] and limits["pids"], name
        assert svc["deploy"]["restart_policy"]["max_attempts"] >= 1, name
        for key in ("update_config", "rollback_config"):
            assert svc["deploy"][key]["order"] in ("start-first", "stop-first"), name
        assert svc["deploy"]["update_config"]["failure_action"] == "rollback"
        assert "privileged" not in svc and "network_mode" not in svc
        assert svc["dns"] == ["127.0.0.1"], name  # unknown names are not looked up outside the site
    specs = build_specs(rendered.model, rendered.stack_name)
    assert specs["cloud"]["TaskTemplate"]["ContainerSpec"]["DNSConfig"] == {"Nameservers": ["127.0.0.1"]}


def test_no_secret_in_any_environment_variable_and_never_in_the_file(rendered: Any) -> None:
    assert SECRET_VALUE not in rendered.text
    for name, svc in rendered.compose["services"].items():
        assert not svc.get("environment"), name
        if rendered.tiers[name] != "front":
            assert [s["source"] for s in svc["secrets"]] == ["trueverit"]
            assert svc["secrets"][0]["mode"] == 0o400 and svc["secrets"][0]["uid"] == "65534"
    assert list(rendered.secrets) == [rendered.compose["secrets"]["trueverit"]["name"]]
    assert repr(next(iter(rendered.secrets.values()))) == "Secret(***)"


def test_stateful_services_keep_their_data_node_and_volume(rendered: Any) -> None:
    for name in ("postgres_db", "timeseries_db", "mqtt_broker"):
        svc = rendered.compose["services"][name]
        assert "node.hostname == m1" in svc["deploy"]["placement"]["constraints"]
        assert svc["deploy"]["replicas"] == 1
        assert {"type": "volume", "source": f"{name}_data", "target": "/var/lib/trueverit"} in svc["volumes"]
        assert svc["deploy"]["update_config"]["order"] == "stop-first"
    specs = build_specs(rendered.model, rendered.stack_name)
    mounts = specs["postgres_db"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert {"Type": "volume", "Source": "trueverit_postgres_db_data", "Target": "/var/lib/trueverit",
            "ReadOnly": False, "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "trueverit",
                                                            "io.tvdeploy.keep": "true"}}} in mounts


def test_ports_only_on_the_fronts(rendered: Any) -> None:
    published = {n for n, s in rendered.compose["services"].items() if s.get("ports")}
    assert published == {"nginx_cloud", "nginx_edge"}


def test_names_of_secrets_and_configs_change_with_their_content(tmp_path: Path) -> None:
    a = render(make_site(tmp_path), RELEASE, REGISTRY)
    b = render(make_site(tmp_path, {"services": {"cloud": {"config": {"X": "1"}}}}), RELEASE, REGISTRY)
    assert a.compose["configs"]["cloud_config"]["name"] != b.compose["configs"]["cloud_config"]["name"]
    assert a.compose["configs"]["edge_config"] == b.compose["configs"]["edge_config"]
    (tmp_path / "stack_secret").write_text("another value")
    site = make_site(tmp_path)
    (tmp_path / "stack_secret").write_text("another value entirely")
    c = render(site, RELEASE, REGISTRY)
    assert c.compose["secrets"]["trueverit"]["name"] != a.compose["secrets"]["trueverit"]["name"]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    doc = json.loads(case.read_text())
    site = make_site(tmp_path, doc.get("values"), doc.get("publish_mode", "host"))
    if "error" in doc:
        with pytest.raises(ConfigError) as err:
            render(site, RELEASE, REGISTRY)
        assert doc["error"] in err.value.message
        assert "\n" not in err.value.message
        return
    r = render(site, RELEASE, REGISTRY)
    services = r.compose["services"]
    exp = doc["expect"]
    if "global" in exp:
        assert sorted(n for n, s in services.items() if s["deploy"]["mode"] == "global") == sorted(exp["global"])
    if "stop_first" in exp:
        assert sorted(n for n, s in services.items() if s["deploy"]["update_config"]["order"] == "stop-first") \
            == sorted(exp["stop_first"])
    for name, n in exp.get("replicas", {}).items():
        assert services[name]["deploy"]["replicas"] == n
    if "endpoint_mode" in exp:
        assert {s["deploy"]["endpoint_mode"] for s in services.values()} == {exp["endpoint_mode"]}
    if "port_mode" in exp:
        assert {p["mode"] for s in services.values() for p in s.get("ports", [])} == {exp["port_mode"]}
    for name, text in exp.get("config_contains", {}).items():
        assert text in r.compose["configs"][f"{name}_config"]["content"]


def test_a_sites_own_template_with_a_typo_names_the_key(tmp_path: Path) -> None:
    from tvdeploy.resources import templates_dir

    own = tmp_path / "own"
    own.mkdir()
    text = (templates_dir() / "trueverit" / "stack.yml.j2").read_text()
    (own / "stack.yml.j2").write_text(text.replace("    read_only: true\n", "    read_olny: true\n"))
    with pytest.raises(ConfigError) as err:
        render(make_site(tmp_path, template=own / "stack.yml.j2"), RELEASE, REGISTRY)
    assert "read_olny" in err.value.message and "stack.yml.j2" in err.value.message


def test_a_template_syntax_error_names_the_line(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "stack.yml.j2").write_text("version: '3.8'\nservices:\n{% for s in services %}\n")
    with pytest.raises(ConfigError) as err:
        render(make_site(tmp_path, template=own / "stack.yml.j2"), RELEASE, REGISTRY)
    assert "stack.yml.j2:" in err.value.message and "syntax" in err.value.message


def test_undefined_value_in_a_template_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "stack.yml.j2").write_text("version: '3.8'\nservices: {{ no_such_thing }}\n")
    with pytest.raises(ConfigError, match="undefined"):
        render(make_site(tmp_path, template=own / "stack.yml.j2"), RELEASE, REGISTRY)


def test_waves_new_services_after_the_new_services_they_talk_to() -> None:
    tiers = {"db": "data", "api": "app", "flow": "app", "edge": "app", "web": "front"}
    depends = {"api": ["db"], "flow": ["api"], "edge": ["flow"], "web": ["edge"]}
    every = list(tiers)
    assert deploy_waves(every, tiers, depends, set(every)) == [["db"], ["api"], ["flow"], ["edge"], ["web"]]
    # updates only: their dependencies already run, so a tier is one wave
    assert deploy_waves(every, tiers, depends, set()) == [["db"], ["api", "edge", "flow"], ["web"]]
    assert deploy_waves(["api", "flow"], tiers, {"api": ["flow"], "flow": ["api"]}, {"api", "flow"}) == \
        [["api", "flow"]]
