"""Command-line interface: ``mtpkdot --help`` lists the commands.

One module per group of commands: :mod:`~mtpkdot.cli.data` (synth, prepare), :mod:`~mtpkdot.cli.run`
(run, demo, evaluate, export, predict), :mod:`~mtpkdot.cli.report` (report, sweep) and
:mod:`~mtpkdot.cli.config` (config, list); :mod:`~mtpkdot.cli.common` holds the options several
commands share and the one-line error path every command runs in. Heavy imports stay inside the
commands so that ``mtpkdot --help`` is fast.
"""

from __future__ import annotations

import typer

import mtpkdot
from mtpkdot.cli import config, data, report, run
from mtpkdot.cli.common import comma_list, log_to_stderr, user_errors

__all__ = ["app", "comma_list", "log_to_stderr", "main", "user_errors"]

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


for _group in (config, data, run, report):
    _group.register(app)


def _guard(typer_app: typer.Typer) -> None:
    """Run every command of ``typer_app`` (and of its groups) inside :func:`user_errors`, so that an
    expected failure anywhere in it ends as one ``error:`` line, never a traceback."""
    for command in typer_app.registered_commands:
        command.callback = user_errors()(command.callback)
    for group in typer_app.registered_groups:
        _guard(group.typer_instance)


_guard(app)


def main() -> None:
    app()
