"""``mtpkdot config [NAME]`` (list the shipped configs, or print one) and ``mtpkdot list`` (what is
registered). ``config`` is a group, so subcommands (``mtpkdot config SUBCOMMAND ...``) can be added
to :data:`config_app`."""

from __future__ import annotations

import typer
from typer.core import TyperGroup


class _ConfigGroup(TyperGroup):
    """A group whose first argument is either a subcommand or a shipped config's name: a name that is
    no subcommand is passed to the hidden ``show`` subcommand, so ``mtpkdot config biovid_b`` prints it."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["show", *args]
        return super().parse_args(ctx, args)


config_app = typer.Typer(cls=_ConfigGroup, invoke_without_command=True, no_args_is_help=False)


@config_app.callback()
def config_cmd(ctx: typer.Context) -> None:
    """List the shipped configs, or print one: `mtpkdot config NAME`.

    `mtpkdot config biovid_b > mine.yaml` starts your own; `mtpkdot run NAME` also accepts these names
    (a file of that name wins)."""
    if ctx.invoked_subcommand is not None:
        return
    from mtpkdot.config import shipped_configs, shipped_summary

    for key, path in shipped_configs().items():
        typer.echo(f"{key:<24} {shipped_summary(path)}")


@config_app.command("show", hidden=True)
def show_cmd(name: str = typer.Argument(..., help="a shipped config's name, e.g. biovid_b")) -> None:
    """Print a shipped config."""
    from mtpkdot.config import shipped_configs

    shipped = shipped_configs()
    key = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if key not in shipped:
        raise typer.BadParameter(f"no shipped config {name!r} (shipped: {', '.join(shipped)})")
    typer.echo(shipped[key].read_text(), nl=False)


@config_app.command("upgrade")
def upgrade_cmd(
    old: str = typer.Argument(..., help="a config file in the version-1 form (no `version: 2`)"),
    output: str = typer.Option(None, "-o", "--output", help="write the new form here (default: stdout)"),
) -> None:
    """Write a version-1 config in the current form (comments are not kept)."""
    from pathlib import Path

    from mtpkdot import plugins
    from mtpkdot.atomic import atomic_write_text
    from mtpkdot.cli.common import user_errors
    from mtpkdot.config import find_config, upgrade_text

    plugins.load()  # the method sections are validated against the registered methods
    with user_errors(code=1):
        path, _ = find_config(old)
        text = upgrade_text(path.read_text(), str(path))
        if output is None:
            typer.echo(text, nl=False)
        else:
            atomic_write_text(Path(output), text)
            typer.echo(f"wrote {output}", err=True)


def list_cmd(
    models: bool = typer.Option(
        False, "--models", help="also build each model and print its parameter count"
    ),
) -> None:
    """Print every registered method, loss, backbone, fusion module and dataset reader."""
    from mtpkdot import plugins
    from mtpkdot.registry import BACKBONES, DATASETS, FUSIONS, LOSSES, METHODS

    plugins.load()
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


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.command("list")(list_cmd)
