"""Configs ship with the package (one copy), `mtpkdot config` lists and prints them, `load_config` and
`mtpkdot run` take a shipped config's name, `mtpkdot --version`, and the comma-list helper of the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import mtpkdot
from mtpkdot.cli import app, comma_list
from mtpkdot.config import SHIPPED_DIR, ConfigError, load_config, shipped_configs

ROOT = Path(__file__).resolve().parents[1]


def test_repository_configs_are_the_shipped_files():
    repo = ROOT / "configs"
    assert repo.is_symlink() and repo.resolve() == SHIPPED_DIR  # one copy, not two
    names = sorted(p.stem for p in repo.glob("*.yaml"))
    assert names == list(shipped_configs()) and "demo" in names and "biovid_b" in names


def test_config_command_lists_one_line_each_and_prints_one():
    runner = CliRunner()
    listing = runner.invoke(app, ["config"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert [line.split()[0] for line in lines] == list(shipped_configs())
    assert all(len(line.split()) > 1 for line in lines)  # every line says what the config is for
    one = runner.invoke(app, ["config", "biovid_b"])
    assert one.exit_code == 0
    assert one.output == (SHIPPED_DIR / "biovid_b.yaml").read_text()
    bad = runner.invoke(app, ["config", "nope"])
    assert bad.exit_code == 2 and "biovid_b" in bad.output


def test_a_printed_config_loads_as_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["config", "biovid_b"]).output
    (tmp_path / "mine.yaml").write_text(out)
    assert load_config(tmp_path / "mine.yaml") == load_config("biovid_b")


def test_load_config_takes_a_name_and_a_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("biovid_b").name == "biovid_b"
    assert load_config("biovid_b.yaml").name == "biovid_b"
    (tmp_path / "biovid_b").write_text(
        (SHIPPED_DIR / "demo.yaml").read_text().replace("name: demo", "name: x")
    )
    assert load_config("biovid_b").name == "x"  # the file in the current directory wins
    with pytest.raises(ConfigError, match="not a shipped config"):
        load_config("sub/biovid_a")  # a path with folders is never a name


def test_shipped_config_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # demo.yaml says `root: data`: the package folder must not receive data, whichever way it is named
    assert load_config("demo").data.root == tmp_path / "data"
    assert load_config(ROOT / "configs" / "demo.yaml").data.root == tmp_path / "data"


def test_run_names_an_unknown_config_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "nope"])
    assert res.exit_code == 2
    assert "not a shipped config" in res.output


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"mtpkdot {mtpkdot.__version__}\n"


def test_comma_list():
    assert comma_list(None, "--folds", int) is None
    assert comma_list("", "--folds", int) is None
    assert comma_list("1, 2,,3", "--folds", int) == [1, 2, 3]
    assert comma_list("none,mtpkdot", "--methods") == ["none", "mtpkdot"]
    with pytest.raises(typer.BadParameter, match="--seeds must be comma-separated integers"):
        comma_list("0,x", "--seeds", int)


def test_run_options_use_the_comma_list(monkeypatch, tmp_path):
    """`mtpkdot run --folds/--seeds/--methods` reach run_experiment as lists; a bad one is a usage error."""
    import mtpkdot.pipeline.experiment as experiment

    seen = {}

    def fake_run(cfg, run_dir, **kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    monkeypatch.chdir(tmp_path)
    args = ["run", "demo", "--folds", "1,2", "--seeds", "0, 3", "--methods", "none,mtpkdot"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "stop here" in res.output
    assert (seen["folds"], seen["seeds"], seen["methods"]) == ([1, 2], [0, 3], ["none", "mtpkdot"])
    bad = CliRunner().invoke(app, ["run", "demo", "--folds", "1,a"])
    assert bad.exit_code == 2 and "--folds must be comma-separated integers" in bad.output


@pytest.mark.parametrize("flag, writes", [([], True), (["--no-report"], False)])
def test_run_no_report_leaves_the_report_to_a_later_command(monkeypatch, tmp_path, flag, writes):
    """Several `mtpkdot run` processes on one run directory (results/make_results.sh) must not each write
    the report: they raced on its figures. --no-report skips it; the default writes it."""
    import pandas as pd

    import mtpkdot.pipeline.experiment as experiment
    import mtpkdot.report as report

    calls = []
    summary = pd.DataFrame({"seed": [0], "fold": [1], "method": ["none"], "accuracy": [50.0]})
    monkeypatch.setattr(experiment, "run_experiment", lambda cfg, run_dir, **kw: summary)
    monkeypatch.setattr(report, "write_report", lambda run_dir: calls.append(run_dir) or tmp_path / "r.md")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["run", "demo", *flag])
    assert res.exit_code == 0, res.output
    assert bool(calls) == writes and ("report:" in res.output) == writes
