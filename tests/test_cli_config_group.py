"""``mtpkdot config`` is a group: a subcommand added to it is reached, while a shipped config's name
in the same place still prints that config (``mtpkdot config NAME``)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.cli.config import config_app


def test_a_subcommand_of_config_is_reached_and_names_still_print(monkeypatch):
    monkeypatch.setattr(config_app, "registered_commands", list(config_app.registered_commands))

    @config_app.command("echo")
    def echo_cmd(path: str) -> None:
        typer.echo(f"echo {path}")

    runner = CliRunner()
    res = runner.invoke(app, ["config", "echo", "old.yaml"])
    assert res.exit_code == 0 and res.output == "echo old.yaml\n", res.output
    res = runner.invoke(app, ["config", "biovid_b"])
    assert res.exit_code == 0 and res.output.startswith("#"), res.output
