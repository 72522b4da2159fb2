"""Without a terminal (nohup, CI, a log file) a run says what it does in lines, not bars: the stage,
epoch and seconds at most every ``MTPKDOT_PROGRESS_SECONDS`` and at each stage end; its closing lines
name both report files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import invoke, set_args, tiny_overrides
from mtpkdot.engine.callbacks import (
    PROGRESS_SECONDS_ENV,
    ProgressBar,
    ProgressLines,
    progress_seconds,
    standard_callbacks,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny demo fold run as a child whose stdout and stderr are pipes, not a terminal."""
    base = tmp_path_factory.mktemp("lines")
    run = base / "run"
    args = ["demo", "--out", str(run), "--device", "cpu", "--folds", "1", "--methods", "none"]
    args += set_args(tiny_overrides(base / "data", base / "store"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTPKDOT_")}
    env[PROGRESS_SECONDS_ENV] = "0"  # a line after every epoch: a tiny stage takes under a second
    res = subprocess.run(
        [sys.executable, "-m", "mtpkdot", *args], capture_output=True, text=True, env=env, timeout=900
    )
    assert res.returncode == 0, res.stderr
    return run, res


def test_without_a_terminal_every_stage_tells_its_epochs_and_its_end(demo) -> None:
    _, res = demo
    err = res.stderr
    assert "\r" not in err  # no bar redraws in the log
    for epoch in (1, 2):
        assert re.search(rf"seed 0 fold 1 teacher: epoch {epoch}/2, val accuracy [\d.]+, \d+ s", err), err
    ends = re.findall(r"seed 0 fold 1 (\w+) done \(stage (\d+)/(\d+), \d+ s\)", err)
    assert [int(i) for _, i, _ in ends] == list(range(1, len(ends) + 1)) and ends[-1][1] == ends[-1][2]
    assert {"teacher", "lower_bound", "student_none"} <= {stage for stage, _, _ in ends}
    assert re.search(r"seed 0 fold 1 done \(\d+ s\)", err)
    assert re.search(r"prepared \d+/\d+ samples", err)  # prepare's own lines too


def test_the_closing_lines_name_both_report_files(demo) -> None:
    run, res = demo
    (line,) = [x for x in res.stdout.splitlines() if x.startswith("report:")]
    assert str(run / "report.md") in line and str(run / "report.html") in line
    assert (run / "report.md").is_file() and (run / "report.html").is_file()


def test_progress_lines_come_at_most_once_per_interval(caplog) -> None:
    caplog.set_level("INFO", logger="mtpkdot")
    ticks = iter([0.0, 10.0, 29.0, 31.0, 40.0, 60.0, 62.0])
    lines = ProgressLines("accuracy", "seed 0 fold 1", every=30.0, clock=lambda: next(ticks))
    trainer = SimpleNamespace(stage="teacher", epochs=6)
    lines.on_fit_start(trainer)
    for epoch in range(1, 7):
        lines.on_checkpoint(trainer, {"epoch": epoch, "val_accuracy": 0.5})
    assert caplog.messages == [
        "seed 0 fold 1 teacher: epoch 3/6, val accuracy 0.5, 31 s",
        "seed 0 fold 1 teacher: epoch 6/6, val accuracy 0.5, 62 s",
    ]


def test_a_terminal_gets_the_bar_and_no_lines() -> None:
    kinds = {type(cb) for cb in standard_callbacks("accuracy", progress=True)}
    assert ProgressBar in kinds and ProgressLines not in kinds
    kinds = {type(cb) for cb in standard_callbacks("accuracy", progress=False)}
    assert ProgressLines in kinds and ProgressBar not in kinds


def test_a_bad_interval_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "soon")
    with pytest.raises(ValueError, match=f"{PROGRESS_SECONDS_ENV} must be a number of seconds"):
        progress_seconds()
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "-1")
    with pytest.raises(ValueError, match="got '-1'"):
        progress_seconds()
    monkeypatch.delenv(PROGRESS_SECONDS_ENV)
    assert progress_seconds() == 30.0


def test_a_bad_interval_stops_a_run_before_any_work(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "soon")
    res = invoke(["demo", "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 2 and f"error: {PROGRESS_SECONDS_ENV} must be" in res.output
    assert not (tmp_path / "run").exists()
