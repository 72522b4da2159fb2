"""The opt-in TensorBoard sink of the training loop, the metrics.csv writer's bytes, and the
``tensorboard`` config key end to end (one TensorBoard run per seed, fold and stage)."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from helpers import invoke, set_args, tiny_overrides
from mtpkdot.config import ConfigError, load_config
from mtpkdot.engine import (
    Selection,
    StageInterrupted,
    Trainer,
    index_batches,
    make_generator,
    run_epoch,
    seed_everything,
    standard_callbacks,
)
from mtpkdot.engine.callbacks import write_metrics
from mtpkdot.engine.loop import INTERRUPT_ENV
from mtpkdot.layout import TENSORBOARD as TENSORBOARD_DIR


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a TensorBoard run folder -> [(step, value)] as TensorBoard shows them."""
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def csv_columns(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Column -> [(epoch, value)] of its filled cells (a student's epoch-0 row has no training columns)."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: [(int(r["epoch"]), float(r[k])) for r in rows if r[k] != ""] for k in rows[0] if k != "epoch"}


def toy_fit(stage_dir: Path, tensorboard: bool = False):
    seed_everything(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(48, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def train_epoch(epoch: int) -> dict[str, float]:
        def compute(b):
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            return {"total": loss, "task": loss}, len(b)

        batches = index_batches(torch.arange(32), 8, shuffle=True, generator=make_generator(epoch))
        res = {f"train_{k}": v for k, v in run_epoch(batches, compute, opt).items()}
        return res | {"sel_video": 3.0, "sel_eda": 1.0}  # as a student's teacher-selection counts

    def validate() -> dict[str, float]:
        with torch.no_grad():
            return {"loss": nn.functional.cross_entropy(model(x[32:]), y[32:]).item()}

    trainer = Trainer(
        stage="toy",
        stage_dir=stage_dir,
        modules={"model": model},
        optimizer=opt,
        section={"lr": 0.01},
        epochs=4,
        selection=Selection("loss", higher_is_better=False),
        callbacks=standard_callbacks("loss", tensorboard=tensorboard, progress=False),
    )
    return trainer.fit(train_epoch, validate)


def assert_scalars_match_csv(stage_dir: Path) -> None:
    columns = csv_columns(stage_dir / "metrics.csv")
    got = scalars(stage_dir / TENSORBOARD_DIR)
    assert sorted(got) == sorted(c.replace("_", "/", 1) for c in columns)
    for column, cells in columns.items():
        tag = column.replace("_", "/", 1)
        assert [s for s, _ in got[tag]] == [e for e, _ in cells], tag  # each epoch once, in order
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in cells], rel=1e-6), tag


def test_fit_writes_every_metrics_column_as_a_scalar(tmp_path):
    toy_fit(tmp_path, tensorboard=True)
    tags = scalars(tmp_path / TENSORBOARD_DIR)
    assert {"lr", "train/total", "train/task", "val/loss", "sel/video", "sel/eda"} == set(tags)
    assert_scalars_match_csv(tmp_path)


def test_off_writes_nothing_and_on_changes_no_result(tmp_path):
    off = toy_fit(tmp_path / "off")
    on = toy_fit(tmp_path / "on", tensorboard=True)
    assert not (tmp_path / "off" / TENSORBOARD_DIR).exists()
    assert (tmp_path / "on" / "metrics.csv").read_bytes() == (tmp_path / "off" / "metrics.csv").read_bytes()
    assert on.history == off.history


def test_resumed_stage_shows_each_epoch_once(tmp_path, monkeypatch):
    monkeypatch.setenv(INTERRUPT_ENV, "toy:2")
    with pytest.raises(StageInterrupted):
        toy_fit(tmp_path, tensorboard=True)
    monkeypatch.delenv(INTERRUPT_ENV)
    toy_fit(tmp_path, tensorboard=True)
    assert len(list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    assert_scalars_match_csv(tmp_path)


def test_switched_on_at_resume_still_shows_the_earlier_epochs(tmp_path, monkeypatch):
    monkeypatch.setenv(INTERRUPT_ENV, "toy:2")
    with pytest.raises(StageInterrupted):
        toy_fit(tmp_path)
    monkeypatch.delenv(INTERRUPT_ENV)
    toy_fit(tmp_path, tensorboard=True)
    assert_scalars_match_csv(tmp_path)


def _without_tensorboard(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )


def test_missing_package_is_a_clear_error_before_training(tmp_path, monkeypatch):
    _without_tensorboard(monkeypatch)
    with pytest.raises(ValueError, match=r"pip install mtpkdot\[tensorboard\]"):
        toy_fit(tmp_path, tensorboard=True)
    assert not tmp_path.joinpath("last.pt").exists()  # no epoch ran
    toy_fit(tmp_path / "off")  # off needs nothing
    with pytest.raises(ConfigError, match=r"pip install mtpkdot\[tensorboard\]"):
        load_config("demo", ["tensorboard=true"])
    assert not load_config("demo").tensorboard


def test_metrics_csv_is_written_byte_for_byte(tmp_path):
    """The csv module writes what the hand-written writer wrote: first-seen column order, empty cells
    for missing or None values, repr of finite floats, nan / inf as str, '\\n' line ends."""
    history = [
        {"epoch": 1, "lr": 0.001, "train_total": 0.5, "val_ccc": float("nan")},
        {"epoch": 2, "lr": 0.001, "train_total": 1 / 3, "sel_video": 2.0, "val_ccc": None},
        {"epoch": 3, "lr": 1e-05, "train_total": math.inf, "val_ccc": -0.25},
    ]
    expected = (
        "epoch,lr,train_total,val_ccc,sel_video\n"
        "1,0.001,0.5,nan,\n"
        "2,0.001,0.3333333333333333,,2.0\n"
        "3,1e-05,inf,-0.25,\n"
    )
    write_metrics(tmp_path / "metrics.csv", history)
    assert (tmp_path / "metrics.csv").read_bytes() == expected.encode()


def test_run_writes_one_tensorboard_run_per_seed_fold_and_stage(tmp_path):
    """`--set tensorboard=true` on a tiny demo: every trained stage of every (seed, fold) has its own
    TensorBoard run, with the scalars of its metrics.csv."""
    sets = tiny_overrides(tmp_path / "data", tmp_path / "store") + ["tensorboard=true"]
    run = tmp_path / "run"
    args = ["demo", "--out", str(run), "--device", "cpu", "--folds", "1", "--methods", "mtpkdot"]
    res = invoke(args + set_args(sets))
    assert res.exit_code == 0, res.output
    trained = sorted(p.parent for p in run.glob("seed*/fold*/*/metrics.csv"))
    names = {p.name for p in trained}
    assert {"backbone_video", "backbone_eda", "teacher", "tnet", "adapters", "student_mtpkdot"} <= names
    assert sorted(p.parent for p in run.glob(f"seed*/fold*/*/{TENSORBOARD_DIR}")) == trained
    for stage_dir in trained:
        assert_scalars_match_csv(stage_dir)
    student = scalars(next(p for p in trained if p.name == "student_mtpkdot") / TENSORBOARD_DIR)
    assert any(tag.startswith("sel/") for tag in student)  # teacher-selection counts
    # switching it off is not a config change: the finished run resumes (nothing to do), not refused
    config_hash = (run / "config.hash").read_text()
    off = [s for s in sets if s != "tensorboard=true"]
    res = invoke(args + set_args(off))
    assert res.exit_code == 0, res.output
    assert (run / "config.hash").read_text() == config_hash
