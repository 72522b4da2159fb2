"""The optimizer registry, the learning-rate schedules with warm-up, and their TrainConfig fields."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtpkdot.config import ConfigError, StudentConfig, TrainConfig, config_from_dict
from mtpkdot.engine import (
    OPTIMIZERS,
    SCHEDULES,
    Selection,
    StageInterrupted,
    Trainer,
    build_optimizer,
    lr_factor,
    standard_callbacks,
)
from mtpkdot.engine.loop import INTERRUPT_ENV


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_each_registered_optimizer_reads_rate_and_weight_decay(name, cls):
    tc = TrainConfig(optimizer=name, lr=0.02, weight_decay=0.003)
    opt = build_optimizer(list(nn.Linear(2, 1).parameters()), tc)
    assert type(opt) is cls
    assert opt.defaults["lr"] == 0.02 and opt.defaults["weight_decay"] == 0.003
    assert OPTIMIZERS.names() == ["adam", "adamw", "sgd"]


def test_sgd_momentum_comes_from_the_config():
    params = list(nn.Linear(2, 1).parameters())
    assert build_optimizer(params, TrainConfig(optimizer="sgd")).defaults["momentum"] == 0.9  # as before
    assert build_optimizer(params, TrainConfig(optimizer="sgd", momentum=0.5)).defaults["momentum"] == 0.5
    assert build_optimizer(params, TrainConfig(optimizer="sgd", momentum=0.0)).defaults["momentum"] == 0.0


def test_unknown_optimizer_or_schedule_names_the_registered_ones():
    params = list(nn.Linear(2, 1).parameters())
    with pytest.raises(KeyError, match="unknown optimizer 'lamb'; registered: adam, adamw, sgd"):
        build_optimizer(params, TrainConfig(optimizer="lamb"))
    with pytest.raises(KeyError, match="unknown lr schedule 'linear'; registered: constant, cosine, step"):
        lr_factor(TrainConfig(schedule="linear"), 1)


def factors(**settings) -> list[float]:
    tc = TrainConfig(**settings)
    return [lr_factor(tc, e) for e in range(1, tc.epochs + 1)]


def test_constant_keeps_the_configured_rate_exactly():
    assert SCHEDULES.names() == ["constant", "cosine", "step"]
    assert factors(epochs=5) == [1.0] * 5
    assert TrainConfig().schedule == "constant" and TrainConfig().warmup_epochs == 0


def test_warmup_rises_linearly_then_hands_over_to_the_schedule():
    assert factors(epochs=5, warmup_epochs=3) == [0.25, 0.5, 0.75, 1.0, 1.0]
    # the schedule's own epochs start after the warm-up: cosine begins at the full rate
    assert factors(epochs=4, warmup_epochs=1, schedule="cosine") == pytest.approx([0.5, 1.0, 0.75, 0.25])


def test_cosine_decays_over_the_epochs_like_torch():
    got = factors(epochs=8, schedule="cosine")
    assert got == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])
    assert got[0] == 1.0 and got[4] == pytest.approx(0.5) and got[-1] > 0
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
    expected = []
    for _ in range(8):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert got == pytest.approx(expected)


def test_step_multiplies_by_its_factor_every_step_epochs():
    got = factors(epochs=10, schedule="step", step_epochs=3, step_factor=0.5)
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    got = factors(epochs=6, warmup_epochs=2, schedule="step", step_epochs=2, step_factor=0.1)
    assert got == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.1, 0.1])


def test_new_fields_at_their_default_leave_the_dumped_section_as_before():
    """Stage hashes are taken over the dumped sections: the settings added with the schedules stay out
    of them at their default (old run directories resume), and enter them when set."""
    before = {"epochs", "batch_size", "lr", "weight_decay", "optimizer", "patience"}
    assert set(TrainConfig().model_dump(mode="json")) == before
    assert "schedule" not in StudentConfig().model_dump(mode="json")
    changed = TrainConfig(momentum=0.8, schedule="step", warmup_epochs=1, step_epochs=2, step_factor=0.5)
    added = set(changed.model_dump(mode="json")) - before
    assert added == {"momentum", "schedule", "warmup_epochs", "step_epochs", "step_factor"}


def test_warmup_as_long_as_training_is_refused():
    data = {"data": {"modalities": {"video": {"kind": "video"}}, "privileged": []}}
    data["student"] = {"epochs": 3, "warmup_epochs": 3}
    with pytest.raises(
        ConfigError, match=r"student: .*warmup_epochs \(3\) must be smaller than epochs \(3\)"
    ):
        config_from_dict(data)


def _scheduled_fit(stage_dir, tc: TrainConfig):
    """A trainer of a constant model under ``tc``'s schedule; the rows of its history."""
    model = nn.Linear(1, 1)
    opt = build_optimizer(list(model.parameters()), tc)
    trainer = Trainer(
        stage="toy",
        stage_dir=stage_dir,
        modules={"model": model},
        optimizer=opt,
        section={"lr": tc.lr},
        epochs=tc.epochs,
        selection=Selection("loss"),
        lr_factor=lambda epoch: lr_factor(tc, epoch),
        callbacks=standard_callbacks("loss", progress=False),
    )
    return trainer.fit(lambda epoch: {"train_total": 0.0}, lambda: {"loss": 1.0}).history


def test_trainer_sets_each_epochs_rate_also_after_resume(tmp_path, monkeypatch):
    """The resumed optimizer state holds the last epoch's scheduled rate; the next epoch's rate must
    still come from the configured one."""
    tc = TrainConfig(optimizer="sgd", lr=0.1, epochs=6, warmup_epochs=1, schedule="cosine")
    expected = [0.1 * lr_factor(tc, e) for e in range(1, 7)]
    assert [row["lr"] for row in _scheduled_fit(tmp_path / "a", tc)] == expected
    monkeypatch.setenv(INTERRUPT_ENV, "toy:3")
    with pytest.raises(StageInterrupted):
        _scheduled_fit(tmp_path / "b", tc)
    monkeypatch.delenv(INTERRUPT_ENV)
    assert [row["lr"] for row in _scheduled_fit(tmp_path / "b", tc)] == expected
