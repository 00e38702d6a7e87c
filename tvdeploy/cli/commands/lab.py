"""tvdeploy lab up|down|reset|status|doctor|images|node ...: a whole site on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from tvdeploy.cli.output import reporter

lab_app = typer.Typer(
    help="Build and drive a complete air-gapped site on this machine (root, Debian packages).",
    no_args_is_help=True,
)
node_app = typer.Typer(help="Add a lab node, or stop/start its dockerd, cut/restore its link.", no_args_is_help=True)
lab_app.add_typer(node_app, name="node")

DIR_HELP = "Lab directory (default $TVDEPLOY_LAB_DIR or ~/.local/share/tvdeploy/lab/default)."


def _dir(value: str | None) -> Path:
    from tvdeploy.lab.layout import default_lab_dir

    return (Path(value) if value else default_lab_dir()).expanduser().resolve()


def _doctor_failed(exc: Exception) -> None:
    """Print the doctor's list (stderr) before the one error line."""
    import sys

    problems = getattr(exc, "problems", [])
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    apt = getattr(exc, "apt_command", None)
    if apt:
        print(f"  fix: {apt}", file=sys.stderr)


@lab_app.command("up")
def up(
    dir: str | None = typer.Option(None, "--dir", help=DIR_HELP),
    nodes: int = typer.Option(3, "--nodes", min=1, max=32, help="Number of nodes in the site file."),
    vcenter_latency_ms: int = typer.Option(0, "--vcenter-latency-ms", min=0, max=10000,
                                           help="Latency added to each vCenter API request."),
    bare: bool = typer.Option(False, "--bare", help="Nodes on their own Debian 12 root, without Docker."),
) -> None:
    """Bring the lab up (idempotent: reuses what is already running) and write DIR/site.yaml."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, note, out
    from tvdeploy.lab import up as lab_up

    lab_dir = _dir(dir)
    try:
        result = lab_up.up(lab_dir, nodes, vcenter_latency_ms, reporter(), bare=True if bare else None)
    except lab_up.DoctorFailed as exc:
        _doctor_failed(exc)
        raise
    if result.operator_key_created:
        note("created an operator key WITHOUT passphrase for the lab (a real site uses an encrypted key)")
    status = lab_up.status(lab_dir)
    if OPTIONS.json:
        emit_json({**status, "seconds": round(result.seconds, 2), "created": result.created})
        return
    made = ", ".join(result.created) if result.created else "nothing new"
    out(f"lab {lab_dir}: {status['state']} in {result.seconds:.1f} s ({made})")
    out(f"site file: {result.layout.site_file}")
    out(f"build engine: {result.layout.docker_host}")


@lab_app.command("down")
def down(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Remove everything the lab made: processes, namespaces, bridge, firewall rules, mounts, files."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.lab import up as lab_up

    lab_dir = _dir(dir)
    removed = lab_up.down(lab_dir, reporter())
    if OPTIONS.json:
        emit_json({"dir": str(lab_dir), "state": "down", "removed": removed})
    else:
        out(f"lab {lab_dir}: down")


@lab_app.command("reset")
def reset(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Return every node to unconfigured: Docker wiped (config, certs, swarm, images) and restarted."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.lab import up as lab_up

    lab_dir = _dir(dir)
    seconds = lab_up.reset(lab_dir, reporter())
    if OPTIONS.json:
        emit_json({"dir": str(lab_dir), "reset": True, "seconds": round(seconds, 2)})
    else:
        out(f"lab {lab_dir}: nodes reset in {seconds:.1f} s")


@lab_app.command("status")
def status(
    dir: str | None = typer.Option(None, "--dir", help=DIR_HELP),
    memory: bool = typer.Option(False, "--memory", help="Also measure resident memory per node."),
) -> None:
    """Show the lab: state up/down/partial, vCenter, nodes, build engine, site file."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out, table
    from tvdeploy.lab import up as lab_up

    lab_dir = _dir(dir)
    doc = lab_up.status(lab_dir)
    if memory and doc["nodes"]:
        doc["memory_kib"] = lab_up.memory(lab_dir)
    if OPTIONS.json:
        emit_json(doc)
        return
    out(f"lab {lab_dir}: {doc['state']}")
    vc = doc["vcenter"]
    out(f"vcenter: {vc['url']} (sha256 {vc['fingerprint']})" if vc else "vcenter: not running")
    out(f"build engine: {doc['build_engine']['docker_host']} ({doc['build_engine']['state']})")
    out(f"site file: {doc['site_file']}")
    if doc["nodes"]:
        mem = doc.get("memory_kib", {})
        table(None, ["name", "address", "role", "zone", "state"] + (["rss MiB"] if mem else []),
              [[n["name"], n["address"], n["role"], n["zone"], n["state"]]
               + ([f"{mem.get(n['name'], 0) / 1024:.0f}"] if mem else []) for n in doc["nodes"]])


@lab_app.command("doctor")
def doctor() -> None:
    """Check this machine can run the lab: root, Debian packages (with the apt command), kernel."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.lab.doctor import diagnose, gather
    from tvdeploy.lab.up import DoctorFailed

    d = diagnose(gather())
    if OPTIONS.json:
        emit_json({"ok": d.ok, "problems": d.problems, "apt_command": d.apt_command})
    if not d.ok:
        exc = DoctorFailed(d.problems, d.apt_command)
        if not OPTIONS.json:
            _doctor_failed(exc)
        raise exc
    out("lab doctor: ok (root, packages, network/PID namespaces, overlayfs)")


@lab_app.command("images")
def images(
    dir: str | None = typer.Option(None, "--dir", help=DIR_HELP),
    version: str = typer.Option("all", "--version", help="1, 2 or all (1 and 2 and the broken variant)."),
    small: bool = typer.Option(False, "--small", help="A few-MiB shared base layer instead of 128 MiB."),
    large_layer: bool = typer.Option(False, "--large-layer",
                                     help="Also build cloud with a large application layer (large-1) and its "
                                          "one-file hot-fix (large-2); writes release-large-v1/v2.yaml."),
    large_size: str = typer.Option("48MiB", "--large-size", metavar="SIZE",
                                   help="Size of that large layer's files (1 MiB each; one changes in large-2)."),
) -> None:
    """Build the 18 stand-in Trueverit images and the registry image into the build engine, offline,
    and write DIR/release-v1.yaml, release-v2.yaml, release-broken.yaml (with --large-layer also
    release-large-v1.yaml and release-large-v2.yaml)."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import TvdeployError
    from tvdeploy.lab.images import build_images

    if version not in ("1", "2", "all"):
        raise TvdeployError(f"--version: expected 1, 2 or all, got {version!r}")
    lab_dir = _dir(dir)
    versions = ["1", "2"] if version == "all" else [version]
    large = None
    if large_layer:
        from tvdeploy.bundle.sizes import parse_size

        try:
            large = parse_size(large_size)
        except ValueError as exc:
            raise TvdeployError(f"--large-size: {exc}") from None
        versions = sorted(set(versions) | {"1"})  # the large releases use version 1 of the others
    result = build_images(lab_dir, versions, small=small, reporter=reporter(), large_layer=large)
    if OPTIONS.json:
        emit_json(result)
        return
    out(f"built {len(result['images'])} images in {result['seconds']:.1f} s into {result['docker_host']}")
    for path in result["release_files"]:
        out(f"release spec: {path}")


@node_app.command("add")
def node_add(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Start one more, unconfigured node and print its site-file entry (not added to site.yaml)."""
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, info, out
    from tvdeploy.lab import nodeops

    rec, entry = nodeops.add(_dir(dir))
    if OPTIONS.json:
        emit_json({"name": rec.name, "address": rec.address, "role": rec.role, "zone": rec.zone, "entry": entry})
        return
    info(f"node {rec.name} is up at {rec.address}; its site-file entry (under nodes:):")
    out(entry.rstrip())


def _simple(action: str, name: str, dir: str | None) -> None:
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.lab import nodeops

    fn = {"stop": nodeops.stop_docker, "start": nodeops.start_docker,
          "isolate": nodeops.isolate, "rejoin": nodeops.rejoin}[action]  # fmt: skip
    fn(_dir(dir), name)
    if OPTIONS.json:
        emit_json({"node": name, "action": action, "ok": True})
    else:
        done = {"stop": "dockerd stopped", "start": "dockerd started", "isolate": "link cut",
                "rejoin": "link restored"}[action]  # fmt: skip
        out(f"node {name}: {done}")


@node_app.command("stop")
def node_stop(name: str = typer.Argument(..., help="Lab node name."),
              dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Stop the node's dockerd (/etc/init.d/docker stop inside the node)."""
    _simple("stop", name, dir)


@node_app.command("start")
def node_start(name: str = typer.Argument(..., help="Lab node name."),
               dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Start the node's dockerd again."""
    _simple("start", name, dir)


@node_app.command("isolate")
def node_isolate(name: str = typer.Argument(..., help="Lab node name."),
                 dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Cut the node's network link (it keeps running, unreachable)."""
    _simple("isolate", name, dir)


@node_app.command("rejoin")
def node_rejoin(name: str = typer.Argument(..., help="Lab node name."),
                dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Restore the node's network link."""
    _simple("rejoin", name, dir)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
