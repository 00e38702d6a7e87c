"""Root of the CLI: global options, command discovery, the one exit path.

Exit codes (ARCHITECTURE.md): 0 success; 1 expected failure, printed as ONE line
``error: ...`` (plus ``(N more errors; -v shows all)``); 64 usage error; a plan with
``--detailed-exitcode`` exits 2 when something would change.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import typer

from tvdeploy import __version__
from tvdeploy.cli import options as options_mod
from tvdeploy.cli.options import split_global_options

EXIT_USAGE = 64

GLOBAL_HELP = (
    "Global options, accepted anywhere on the line: --json (one JSON document on stdout), "
    "--yes/-y (answer yes), -v/--verbose (details, tracebacks), -q/--quiet, --no-color."
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="tvdeploy",
        help="Deploy and keep the Trueverit platform on air-gapped sites: VMware VMs, Docker Swarm "
        "with TLS, signed offline bundles, audited rollouts.\n\n" + GLOBAL_HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback(invoke_without_command=True)
    def root(
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    ) -> None:
        if version:
            print(f"tvdeploy {__version__}")
            raise typer.Exit(0)

    from tvdeploy.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app


def _is_usage_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


def _print_error(message: str, details: list[str], verbose: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    if details:
        if verbose:
            for line in details:
                print(f"  {line}", file=sys.stderr)
        else:
            print(f"({len(details)} more errors; -v shows all)", file=sys.stderr)


def run(argv: list[str]) -> int:
    """Run the CLI on *argv* (without the program name) and return the exit code."""
    try:
        return _run(argv)
    finally:
        _copy_audit_to_site()


def _copy_audit_to_site() -> None:
    """Each site whose audit log got a record in this command: append it to the managers' copies
    (tvdeploy.execute.audit_site). Never changes the exit code: a copy that could not be updated
    is a warning, and the next command catches up."""
    recorder = sys.modules.get("tvdeploy.audit.recorder")  # not loaded: nothing was recorded
    if recorder is None:
        return
    for site in recorder.take_pending():
        try:
            from tvdeploy.execute.audit_site import replicate

            problems = replicate(site)
        except Exception as exc:  # noqa: BLE001 - a warning, never a failure of the command
            problems = [f"site {site.site.name}: the site's copy of the audit log was not updated: {exc}"]
        for line in problems:
            print(f"warning: {line}", file=sys.stderr)


def _run(argv: list[str]) -> int:
    from tvdeploy.errors import TvdeployError

    opts, rest = split_global_options(argv)
    options_mod.OPTIONS.__dict__.update(opts.__dict__)
    if opts.no_color:
        import os

        os.environ["NO_COLOR"] = "1"
    app = build_app()
    try:
        result: Any = app(args=rest, prog_name="tvdeploy", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except TvdeployError as exc:
        if opts.verbose:
            import traceback

            traceback.print_exc()
        if opts.json:
            from tvdeploy.cli.output import emit_json

            emit_json({"error": exc.message, "details": exc.details})
        _print_error(exc.message, exc.details, opts.verbose)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns anything into one line
        if _is_usage_error(exc):
            show = getattr(exc, "format_message", None)
            text = show() if callable(show) else str(exc)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                print(ctx.get_usage(), file=sys.stderr)
            print(f"usage error: {text}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            return 1
        if opts.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not opts.verbose:
            print("(run with -v for the traceback)", file=sys.stderr)
        return 1


def main() -> None:
    code = run(sys.argv[1:])
    # The command is done: every object still alive dies with the process anyway, so keep the
    # interpreter's final garbage collection from walking them (it cost 0.5-0.75 s after a
    # swarm bootstrap). Cleanup that matters (temp files, locks) already ran in the command.
    import gc

    gc.freeze()
    sys.exit(code)
