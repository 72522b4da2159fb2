"""Engine: seeding, checkpoints with config hashes, the trainer (early stopping, exact resume)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtpkdot.engine import (
    ConfigMismatchError,
    Selection,
    StageInterrupted,
    Trainer,
    derive_seed,
    index_batches,
    load_checkpoint,
    make_generator,
    run_epoch,
    save_checkpoint,
    seed_everything,
    standard_callbacks,
)
from mtpkdot.engine.loop import INTERRUPT_ENV


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "fold1", "teacher") == derive_seed(0, "fold1", "teacher")
    assert derive_seed(0, "fold1", "teacher") != derive_seed(1, "fold1", "teacher")
    assert derive_seed(0, "fold1", "teacher") != derive_seed(0, "fold2", "teacher")


def test_index_batches_keeps_every_sample_at_evaluation():
    batches = index_batches(torch.arange(10), 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    train = index_batches(torch.arange(10), 4, shuffle=True, generator=make_generator(0), drop_last=True)
    assert [len(b) for b in train] == [4, 4]
    # a set smaller than one batch is still one batch, even with drop_last
    assert [len(b) for b in index_batches(torch.arange(3), 4, drop_last=True)] == [3]
    shards = [index_batches(torch.arange(8), 4, rank=r, world_size=2) for r in range(2)]
    assert sorted(torch.cat([shards[0][0], shards[1][0]]).tolist()) == [0, 1, 2, 3]


def test_checkpoint_mismatch_names_file_and_keys(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"x": 1}, {"lr": 0.001, "epochs": 3})
    assert load_checkpoint(path, {"lr": 0.001, "epochs": 3})["x"] == 1
    with pytest.raises(ConfigMismatchError) as err:
        load_checkpoint(path, {"lr": 0.01, "epochs": 3})
    assert "last.pt" in str(err.value) and "lr" in str(err.value) and "--out" in str(err.value)
    assert "epochs" not in str(err.value)


def _problem(seed: int = 0):
    seed_everything(seed)
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        batches = index_batches(torch.arange(48), 16, shuffle=True, generator=make_generator(epoch))

        def compute(b):
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            return {"total": loss, "task": loss}, len(b)

        return {f"train_{k}": v for k, v in run_epoch(batches, compute, opt).items()}

    def validate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            acc = (model(x[48:]).argmax(1) == y[48:]).float().mean().item() * 100
            loss = nn.functional.cross_entropy(model(x[48:]), y[48:]).item()
        return {"accuracy": acc, "loss": loss}

    return model, opt, train_epoch, validate


def fit(stage_dir, model, opt, train_epoch, validate, *, epochs, section, selection, **kw):
    """A trainer of one module ``model`` in stage ``toy`` with the pipeline's callbacks, fitted."""
    trainer = Trainer(
        stage="toy",
        stage_dir=stage_dir,
        modules={"model": model},
        optimizer=opt,
        section=section,
        epochs=epochs,
        selection=selection,
        callbacks=standard_callbacks(selection.primary, progress=False),
        **kw,
    )
    return trainer.fit(train_epoch, validate)


def _fit(tmp_path):
    model, opt, train_epoch, validate = _problem()
    res = fit(
        tmp_path,
        model,
        opt,
        train_epoch,
        validate,
        epochs=6,
        section={"lr": 0.01},
        selection=Selection("loss", higher_is_better=False),
    )
    return res, model


def test_fit_writes_files_and_restores_best(tmp_path):
    res, model = _fit(tmp_path)
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["epoch", "lr", "train_total"] and len(lines) == 7
    losses = [h["val_loss"] for h in res.history]
    assert res.best_score == min(losses) and res.history[res.best_epoch - 1]["val_loss"] == min(losses)
    best = load_checkpoint(tmp_path / "best.pt")["modules"]["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k])


def test_resume_after_interrupt_is_exact(tmp_path, monkeypatch):
    full, model_full = _fit(tmp_path / "a")
    monkeypatch.setenv(INTERRUPT_ENV, "toy:3")
    with pytest.raises(StageInterrupted):
        _fit(tmp_path / "b")
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed, model_res = _fit(tmp_path / "b")
    assert resumed.history == full.history
    for k, v in model_full.state_dict().items():
        assert torch.equal(v, model_res.state_dict()[k])
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


def test_resume_with_other_config_is_refused(tmp_path):
    _fit(tmp_path)
    model, opt, train_epoch, validate = _problem()
    with pytest.raises(ConfigMismatchError):
        fit(
            tmp_path,
            model,
            opt,
            train_epoch,
            validate,
            epochs=6,
            section={"lr": 0.02},
            selection=Selection("loss"),
        )


def _scripted_fit(stage_dir, losses: list[float], patience: int | None):
    """fit() on a model whose epoch ``e`` sets its weight to ``e`` and scores ``losses[e - 1]``."""
    model = nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trained: list[int] = []

    def train_epoch(epoch: int) -> dict[str, float]:
        trained.append(epoch)
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        return {"train_total": 0.0}

    def validate() -> dict[str, float]:
        return {"loss": losses[int(model.weight.item()) - 1]}

    selection = Selection("loss", higher_is_better=False, patience=patience)
    res = fit(
        stage_dir,
        model,
        opt,
        train_epoch,
        validate,
        epochs=len(losses),
        section={"lr": 0.1},
        selection=selection,
    )
    return res, model, trained


# best at epoch 2, then two worse epochs, then better again (which patience 2 must never see)
LOSSES = [1.0, 0.5, 0.6, 0.7, 0.4, 0.3, 0.2, 0.1]


def test_early_stopping_honours_patience(tmp_path):
    res, model, trained = _scripted_fit(tmp_path / "p2", LOSSES, patience=2)
    assert trained == [1, 2, 3, 4]  # stopped after two epochs without improvement
    assert res.epochs_run == 4 and res.best_epoch == 2 and res.best_score == 0.5
    assert model.weight.item() == 2.0  # the best epoch's weights are restored
    # a finished (stopped) stage does not train again when fit is called on it once more
    again, _, trained_again = _scripted_fit(tmp_path / "p2", LOSSES, patience=2)
    assert trained_again == [] and again.best_epoch == 2
    res3, _, trained3 = _scripted_fit(tmp_path / "p3", LOSSES, patience=3)
    assert trained3 == list(range(1, 9)) and res3.best_epoch == 8
    res_none, _, trained_none = _scripted_fit(tmp_path / "none", [1.0] + [2.0] * 7, patience=None)
    assert trained_none == list(range(1, 9)) and res_none.best_epoch == 1


# never two worse epochs in a row: each improvement must reset the count of patience 2
ZIGZAG = [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.7, 0.75]


def test_improvement_resets_the_patience_count(tmp_path):
    res, model, trained = _scripted_fit(tmp_path, ZIGZAG, patience=2)
    assert trained == list(range(1, 9)) and res.best_epoch == 7 and model.weight.item() == 7.0


def test_patience_count_survives_a_resume(tmp_path, monkeypatch):
    """Interrupted after epoch 3 (one epoch without improvement, of patience 2), the resumed stage
    must stop after epoch 4, as the uninterrupted one does (LOSSES improves again at epoch 5)."""
    monkeypatch.setenv(INTERRUPT_ENV, "toy:3")
    with pytest.raises(StageInterrupted):
        _scripted_fit(tmp_path, LOSSES, patience=2)
    assert load_checkpoint(tmp_path / "last.pt")["bad_epochs"] == 1
    monkeypatch.delenv(INTERRUPT_ENV)
    res, model, trained = _scripted_fit(tmp_path, LOSSES, patience=2)
    assert trained == [4] and res.epochs_run == 4 and res.best_epoch == 2 and model.weight.item() == 2.0


def _curve_fit(stage_dir, losses: list[float], initial_eval: bool = False, **selection):
    """fit() on a model whose epoch ``e`` sets its weight to ``e`` and scores ``losses[e]`` (epoch 0: the
    untrained weight 0); ``selection``: the settings of :class:`Selection`."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def train_epoch(epoch: int) -> dict[str, float]:
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        return {"train_total": 0.0}

    res = fit(
        stage_dir,
        model,
        opt,
        train_epoch,
        lambda: {"loss": losses[int(model.weight.item())]},
        epochs=len(losses) - 1,
        section={"lr": 0.1},
        selection=Selection("loss", higher_is_better=False, **selection),
        initial_eval=initial_eval,
    )
    return res, model


# epoch 0 (untrained) scores best of all; epoch 1 is a lucky spike; epochs 4-6 are steadily good
CURVE = [0.0, 0.1, 0.9, 0.8, 0.3, 0.3, 0.3, 0.9, 0.9]


def test_epoch_zero_is_logged_once_and_never_selected(tmp_path, monkeypatch):
    res, model = _curve_fit(tmp_path / "a", CURVE, initial_eval=True)
    assert [h["epoch"] for h in res.history] == list(range(9))
    assert res.history[0]["val_loss"] == 0.0 and "train_total" not in res.history[0]
    assert res.best_epoch == 1 and model.weight.item() == 1.0
    monkeypatch.setenv(INTERRUPT_ENV, "toy:3")
    with pytest.raises(StageInterrupted):
        _curve_fit(tmp_path / "b", CURVE, initial_eval=True)
    monkeypatch.delenv(INTERRUPT_ENV)
    resumed, _ = _curve_fit(tmp_path / "b", CURVE, initial_eval=True)
    assert resumed.history == res.history  # resume does not evaluate epoch 0 again
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


@pytest.mark.parametrize(
    ("kw", "best"),
    [
        ({}, 1),  # the best single epoch: the spike
        ({"window": 3}, 6),  # mean of epochs 4-6 is best; the weights of epoch 6
        ({"after": 4}, 4),  # the first best from epoch 4 on
        ({"window": 3, "patience": 1}, 3),  # patience counts from the first full window (epoch 3)
        ({"after": 20}, 8),  # fewer epochs than select_after: the last epoch
    ],
)
def test_selection_rules(tmp_path, kw, best):
    res, model = _curve_fit(tmp_path, CURVE, **kw)
    assert res.best_epoch == best and model.weight.item() == float(best)
