"""`mtpkdot synth`: its options come from SynthConfig (names, defaults, help), and what is typed on the
command line reaches the generator (synth.json records the settings the data was made with)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.cli.data import AFFWILD2_OPTIONS, BIOVID_OPTIONS, CLI_DEFAULTS
from mtpkdot.config import SYNTH_DEFAULTS, SynthConfig


def _options(command: str) -> dict[str, object]:
    """Parameter name -> default, as click sees the command."""
    group = typer.main.get_command(app)
    cmd = group.commands["synth"].commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in cmd.params if p.name not in ("out", "help")}


@pytest.mark.parametrize(("command", "options"), [("biovid", BIOVID_OPTIONS), ("affwild2", AFFWILD2_OPTIONS)])
def test_options_and_defaults_come_from_synth_config(command, options):
    got = _options(command)
    assert set(got) == set(options) | {"workers"} and set(options) <= set(SynthConfig.model_fields)
    expected = SynthConfig(**{**SYNTH_DEFAULTS[command], **CLI_DEFAULTS[command]})
    for name in options:
        assert got[name] == getattr(expected, name), name
    assert CLI_DEFAULTS["biovid"] == {} and got["subjects"] == (12 if command == "affwild2" else 20)


def test_biovid_options_reach_the_generator(tmp_path: Path):
    out = tmp_path / "d"
    args = ["synth", "biovid", str(out), "--subjects", "2", "--samples-per-class", "1", "--size", "16"]
    args += ["--duration", "0.5", "--part", "b", "--five-class", "--seed", "7", "--video-strength", "2.5"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "synthetic Biovid (2 subjects)" in res.output
    stamp = json.loads((out / "synth.json").read_text())
    expected = SynthConfig(
        subjects=2, samples_per_class=1, size=16, duration=0.5, part="B", five_class=True, seed=7
    )
    expected.video_strength = 2.5
    assert stamp == {"kind": "biovid", **expected.model_dump(mode="json")}
    assert len(list((out / "video").rglob("*.mp4"))) == 2 * 5  # five classes, one sample each


def test_affwild2_aliases_and_its_own_defaults(tmp_path: Path):
    out = tmp_path / "a"
    args = ["synth", "affwild2", str(out), "--videos", "3", "--size", "16", "--audio-strength", "0.5"]
    res = CliRunner().invoke(app, args + ["--fps", "5", "--duration", "1"])
    assert res.exit_code == 0, res.output
    stamp = json.loads((out / "synth.json").read_text())
    assert (stamp["subjects"], stamp["physio_strength"], stamp["fps"]) == (3, 0.5, 5)


def test_a_bad_value_is_a_usage_error_naming_the_field(tmp_path: Path):
    res = CliRunner().invoke(app, ["synth", "biovid", str(tmp_path / "d"), "--subjects", "1"])
    assert res.exit_code == 2 and "subjects" in res.output
    assert not (tmp_path / "d").exists()
