"""Command-line interface: ``mtpkdot --help`` lists the commands.

Each concern registers its own commands (data: synth, prepare; pipeline: run, demo, train, evaluate,
export, predict; report: report, sweep) so that this file stays small. This file holds what every
command shares: :func:`user_errors` and :func:`comma_list`, imported by the command modules inside
their functions (they are imported while this module loads).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer

import mtpkdot

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mtpkdot: privileged knowledge distillation for multimodal affect recognition "
    "(MT-PKDOT and the methods it compares with). Start with `mtpkdot demo`.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mtpkdot {mtpkdot.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """mtpkdot: privileged knowledge distillation for multimodal affect recognition."""


@app.command("config")
def config_cmd(
    name: str = typer.Argument(None, help="a shipped config's name, e.g. biovid_b (omit to list them)"),
) -> None:
    """List the shipped configs, or print one.

    `mtpkdot config biovid_b > mine.yaml` starts your own; `mtpkdot run NAME` also accepts these names
    (a file of that name wins)."""
    from mtpkdot.config import shipped_configs, shipped_summary

    shipped = shipped_configs()
    if name is None:
        for key, path in shipped.items():
            typer.echo(f"{key:<24} {shipped_summary(path)}")
        return
    key = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if key not in shipped:
        raise typer.BadParameter(f"no shipped config {name!r} (shipped: {', '.join(shipped)})")
    typer.echo(shipped[key].read_text(), nl=False)


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


def comma_list(text: str | None, option: str, item: Callable[[str], T] = str) -> list[T] | None:
    """The items of a comma-separated option value (``--folds 1,2``; spaces ignored), each converted
    with ``item``; ``None`` when the option is absent or empty. A bad item is a usage error naming
    ``option``."""
    if not text:
        return None
    parts = [x for x in text.replace(" ", "").split(",") if x]
    try:
        return [item(x) for x in parts]
    except ValueError:
        kind = {int: "integers", float: "numbers"}.get(item, "values")  # type: ignore[call-overload]
        raise typer.BadParameter(f"{option} must be comma-separated {kind}, got {text!r}") from None


def log_to_stderr() -> None:
    """Show the library's ``logging`` messages (INFO and up) on stderr, once, as ``mtpkdot: ...``."""
    logging.basicConfig(level=logging.INFO, format="mtpkdot: %(message)s")


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
