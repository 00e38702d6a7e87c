"""tvdeploy lab sink on|off|reset|report: count (and drop) every packet that tries to leave the lab."""

from __future__ import annotations

import typer

sink_app = typer.Typer(
    help="The air-gap sink: nodes get a route to the lab bridge, where every packet bound outside "
    "the lab subnet (DNS included) is counted, logged and dropped.",
    no_args_is_help=True,
)

DIR_HELP = "Lab directory (default $TVDEPLOY_LAB_DIR or ~/.local/share/tvdeploy/lab/default)."


def _done(lab_dir: object, state: str, message: str) -> None:
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out

    if OPTIONS.json:
        emit_json({"dir": str(lab_dir), "sink": state})
    else:
        out(message)


@sink_app.command("on")
def sink_on(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Give every node a default route into the sink and install its counting rules (idempotent)."""
    from tvdeploy.cli.commands.lab import _dir
    from tvdeploy.lab import sink

    layout = sink.enable(_dir(dir))
    _done(
        layout.dir,
        "on",
        f"lab {layout.dir}: sink on (default route via {layout.gateway}; "
        f"anything bound outside {layout.subnet} is counted and dropped)",
    )


@sink_app.command("off")
def sink_off(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Remove the nodes' default routes and the sink's rules (nodes are routeless again)."""
    from tvdeploy.cli.commands.lab import _dir
    from tvdeploy.lab import sink

    layout = sink.disable(_dir(dir))
    _done(layout.dir, "off", f"lab {layout.dir}: sink off (nodes have no default route)")


@sink_app.command("reset")
def sink_reset(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Zero the sink's counters: the next report covers from now on."""
    from tvdeploy.cli.commands.lab import _dir
    from tvdeploy.lab import sink

    layout = sink.reset(_dir(dir))
    _done(layout.dir, "on", f"lab {layout.dir}: sink counters reset")


@sink_app.command("report")
def sink_report(dir: str | None = typer.Option(None, "--dir", help=DIR_HELP)) -> None:
    """Packets that tried to leave the lab since the last reset (exit 1 when any did), each flow
    named: source, destination, protocol and port."""
    import sys

    from tvdeploy.cli.commands.lab import _dir
    from tvdeploy.cli.options import OPTIONS
    from tvdeploy.cli.output import emit_json, out
    from tvdeploy.errors import RefusedError
    from tvdeploy.lab import sink

    lab_dir = _dir(dir)
    result = sink.report(lab_dir)
    if OPTIONS.json:
        emit_json({"dir": str(lab_dir), **result.to_json()})
        if not result.ok:  # one JSON document on stdout, the one error line on stderr, exit 1
            print(f"error: lab {lab_dir}: {result.summary()}", file=sys.stderr)
            raise typer.Exit(1)
        return
    if not result.ok:
        for finding in result.findings:
            out(finding.describe())
        raise RefusedError(f"lab {lab_dir}: {result.summary()}")
    out(f"lab {lab_dir}: {result.summary()}")


def register(app: typer.Typer) -> None:
    from tvdeploy.cli.commands.lab import lab_app

    lab_app.add_typer(sink_app, name="sink")
