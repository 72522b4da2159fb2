"""Command-line interface: ``mtpkdot --help`` lists the commands.

Each concern registers its own commands (data: synth, prepare; pipeline: run, demo, train, evaluate,
export, predict; report: report, sweep) so that this file stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mtpkdot: privileged knowledge distillation for multimodal affect recognition "
    "(MT-PKDOT and the methods it compares with). Start with `mtpkdot demo`.",
)


@app.callback()
def _root() -> None:
    """mtpkdot: privileged knowledge distillation for multimodal affect recognition."""


@app.command("list")
def list_cmd(
    models: bool = typer.Option(
        False, "--models", help="also build each model and print its parameter count"
    ),
) -> None:
    """Print every registered method, loss, backbone, fusion module and dataset reader."""
    from mtpkdot.registry import BACKBONES, DATASETS, FUSIONS, LOSSES, METHODS, load_all

    load_all()
    for title, reg in (
        ("methods", METHODS),
        ("losses", LOSSES),
        ("backbones", BACKBONES),
        ("fusions", FUSIONS),
        ("datasets", DATASETS),
    ):
        typer.echo(f"{title}:")
        for name, obj in reg.items():
            doc = (obj.__doc__ or "").strip().splitlines()
            typer.echo(f"  {name:<16} {doc[0] if doc else ''}")
    if models:
        from mtpkdot.models import describe_models

        typer.echo("models (parameters):")
        for name, count in describe_models():
            typer.echo(f"  {name:<28} {count:>12,}")


@contextmanager
def user_errors(code: int = 2) -> Iterator[None]:
    """Show an expected failure (bad config or data, a run directory that does not match) as one
    ``error: ...`` line and exit with ``code``; ``MTPKDOT_DEBUG=1`` shows the traceback instead."""
    from mtpkdot.engine.checkpoint import ConfigMismatchError

    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError, ConfigMismatchError) as exc:
        if os.environ.get("MTPKDOT_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        typer.echo(f"error: {message}", err=True)
        typer.echo("(set MTPKDOT_DEBUG=1 to see the traceback)", err=True)
        raise typer.Exit(code) from None


def _register_subcommands() -> None:
    import importlib

    for module in ("mtpkdot.data.commands", "mtpkdot.pipeline.commands", "mtpkdot.report.commands"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(app)


_register_subcommands()


def main() -> None:
    app()
