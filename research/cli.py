"""The ``anprfed`` command-line root.

Sub-command groups (``synth``, ``force``, ``retention``, ``study``, ...) live with the role
that owns them and are plugged in through the ``anprfed.commands`` entry-point group, the way
Flower loads a ClientApp or ServerApp by reference. The root therefore never imports a
force-side or server-side package, which keeps the trust boundary visible in the import graph.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points

import typer

from federation import __version__

COMMAND_GROUP = "anprfed.commands"

app = typer.Typer(
    name="anprfed",
    help=(
        "Privacy-preserving federated research on ANPR data: synthetic worlds, force stores "
        "with keyed pseudonymisation, rolling deletion, DP training and Flower studies."
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    # Never print local variables in tracebacks: they can hold raw VRMs or camera ids.
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"anprfed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level."),
) -> None:
    """Privacy-preserving federated research on ANPR data."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register_plugins() -> None:
    """Attach every sub-command group declared under the ``anprfed.commands`` entry points."""
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        sub_app = ep.load()
        app.add_typer(sub_app, name=ep.name)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    _register_plugins()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
