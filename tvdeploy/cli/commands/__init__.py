"""One module per command group. Each module defines ``register(app)`` which adds its typer
group (or top-level command) to the root app. Modules import only typer and tvdeploy.cli at
module level; domain code and heavy libraries are imported inside the command functions so
that ``tvdeploy --help`` stays fast."""
