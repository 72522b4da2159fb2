"""A tiny demo run with early stopping and a learning-rate schedule on, interrupted in a stage while
its patience count runs and resumed, ends with the files of the uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers import TRAINED_SECTIONS, invoke, set_args, tiny_overrides
from mtpkdot.config import TrainConfig
from mtpkdot.engine import StageInterrupted, load_checkpoint, lr_factor
from mtpkdot.engine.loop import INTERRUPT_ENV

EPOCHS, PATIENCE = 6, 2
SECTIONS = TRAINED_SECTIONS
STUDENT = {"lr": 1e-3, "epochs": EPOCHS, "schedule": "cosine", "warmup_epochs": 1}


def overrides(base: Path) -> list[str]:
    sets = tiny_overrides(base / "data", base / "store")  # later settings of a key win
    for sec in SECTIONS:
        sets += [f"{sec}.epochs={EPOCHS}", f"{sec}.patience={PATIENCE}"]
    sets += [f"student.{k}={v}" for k, v in STUDENT.items()]
    return sets + ["student.methods=[none, pkdot]", "student.select_window=1"]


def demo(run: Path, sets: list[str]):
    return invoke(["demo", "--out", str(run), "--device", "cpu", "--folds", "1"] + set_args(sets))


def trained_epochs(stage_dir: Path) -> int:
    return int((pd.read_csv(stage_dir / "metrics.csv")["epoch"] >= 1).sum())


def test_resume_inside_a_running_patience_count_gives_the_uninterrupted_metrics(tmp_path, monkeypatch):
    sets = overrides(tmp_path)
    assert demo(tmp_path / "a", sets).exit_code == 0
    fold_a = tmp_path / "a" / "seed0" / "fold1"
    # a stage that stopped early, after PATIENCE epochs without improvement: interrupt it one epoch
    # before it stopped, when its count is running
    stopped = [
        d for d in sorted(fold_a.iterdir()) if (d / "last.pt").is_file() and trained_epochs(d) < EPOCHS
    ]
    assert stopped, "no stage stopped early: the test cannot see the patience count"
    stage = stopped[-1].name
    epoch = trained_epochs(stopped[-1]) - 1
    monkeypatch.setenv(INTERRUPT_ENV, f"{stage}:{epoch}")
    with pytest.raises(StageInterrupted):
        demo(tmp_path / "b", sets)
    fold_b = tmp_path / "b" / "seed0" / "fold1"
    assert load_checkpoint(fold_b / stage / "last.pt")["bad_epochs"] == PATIENCE - 1
    monkeypatch.delenv(INTERRUPT_ENV)
    assert demo(tmp_path / "b", sets).exit_code == 0
    assert (tmp_path / "a" / "summary.csv").read_text() == (tmp_path / "b" / "summary.csv").read_text()
    for metrics in sorted(fold_a.glob("*/metrics.csv")):
        assert metrics.read_text() == (fold_b / metrics.parent.name / "metrics.csv").read_text(), metrics
    # the students trained at the scheduled rates (epoch 0: the untrained student, at the configured rate)
    tc = TrainConfig(**STUDENT)
    lrs = pd.read_csv(fold_a / "student_pkdot" / "metrics.csv")
    lrs = lrs.set_index("epoch")["lr"]
    assert lrs[0] == tc.lr
    assert lrs.drop(0).tolist() == [tc.lr * lr_factor(tc, e) for e in lrs.index if e >= 1]
