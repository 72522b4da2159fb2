"""The stage graph (mtpkdot.pipeline.graph) and the run layout (mtpkdot.layout): which stages a config
change invalidates, that adding a method invalidates nothing, and where prepare and run put the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtpkdot.config import load_config
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.graph import STAGES, section, stage_names
from stagegraph import invalidated

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["none", "mtpkdot"]


def _ctx(run_dir: Path, overrides: list[str]) -> FoldContext:
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
    split = {"train": np.arange(0, 6), "val": np.arange(6, 8), "test": np.arange(8, 10)}
    return FoldContext(cfg, None, split, run_dir, 0, 1, torch.device("cpu"), graph_section=section)


def _names(ctx: FoldContext, methods: list[str]) -> list[str]:
    return stage_names(ctx.order, methods)


def _invalidated(tmp_path: Path, change: list[str], methods: list[str] = METHODS) -> set[str]:
    return invalidated(lambda o: _ctx(tmp_path, o), [], change, METHODS, methods)


EVERY = {
    "backbone_video",
    "backbone_eda",
    "features",
    "teacher",
    "tnet",
    "adapters",
    "lower_bound",
    "student_none",
    "student_mtpkdot",
}
STUDENTS = {"student_none", "student_mtpkdot"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # a modality's training is in its own backbone's section only: the other backbone stays valid
        (["backbones.eda.lr=0.5"], EVERY - {"backbone_video"}),
        # every backbone's section holds the hash of the data section (its "base"), so a data
        # setting reaches every stage; the modality section itself sits in its backbone only
        (["data.modalities.eda.window=[0.0, 1.0]"], EVERY),
        (["teacher.lr=0.5"], {"teacher", "adapters", *STUDENTS}),
        (["tnet.cosine_weight=0.5"], {"tnet", *STUDENTS}),
        (["adapters.lr=0.5"], {"adapters", *STUDENTS}),
        (["student.lr=0.5"], STUDENTS),
        (["distill.mtpkdot.k=7"], {"student_mtpkdot"}),
        (["distill.alpha=0.5"], STUDENTS),
        (["student.finetune_backbone=true"], STUDENTS),
        (["protocol.val_subjects=0.4"], EVERY),
    ],
)
def test_a_config_change_invalidates_its_stage_and_the_later_ones_only(tmp_path, change, expected):
    assert _invalidated(tmp_path, change) == expected


def test_adding_a_method_leaves_every_other_stage_valid(tmp_path):
    more = [*METHODS, "pkdot"]
    assert _invalidated(tmp_path, [f"student.methods={more}"], methods=more) == set()
    ctx = _ctx(tmp_path, [])
    assert _names(ctx, more) == [*_names(ctx, METHODS), "student_pkdot"]


def test_run_order_comes_from_the_declarations():
    names = stage_names(["video", "eda"], ["none"])
    assert names == [
        "backbone_video",
        "backbone_eda",
        "features",
        "teacher",
        "tnet",
        "adapters",
        "lower_bound",
        "student_none",
    ]
    # every stage a stage reads runs before it
    position = {s.name: i for i, s in enumerate(STAGES)}
    for i, s in enumerate(STAGES):
        for r in s.reads.values():
            up = r if isinstance(r, str) else r.stage
            assert position[up] < i, (s.name, up)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("data_store", [False, True])
@pytest.mark.parametrize("with_out", [False, True])
def test_store_location_is_the_same_for_prepare_and_run(tmp_path, monkeypatch, with_out, data_store):
    """`mtpkdot prepare CONFIG [--out X]` writes the store `mtpkdot run CONFIG [--out X]` opens."""
    import importlib

    from mtpkdot.cli import app

    prep = importlib.import_module("mtpkdot.data.prepare")  # the module (the package exports a function)

    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []

    def fake_prepare(cfg, store_dir=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(Path(store_dir).resolve())
        raise _Stop

    monkeypatch.setattr(prep, "prepare", fake_prepare)
    args = ["--set", "name=where"]
    if data_store:
        args += ["--set", f"data.store={tmp_path / 'elsewhere'}"]
    if with_out:
        args += ["--out", str(tmp_path / "x")]
    config = str(ROOT / "configs" / "demo.yaml")
    for cmd in ("prepare", "run"):
        res = CliRunner().invoke(app, [cmd, config, *args])
        assert isinstance(res.exception, _Stop), res.output
    expected = (
        tmp_path / "elsewhere"
        if data_store
        else (tmp_path / "x" / "store" if with_out else tmp_path / "runs" / "where" / "store")
    )
    assert seen == [expected, expected]


def test_lower_bound_depends_on_the_student_settings_only_when_it_trains(tmp_path):
    """One prevalent modality: the lower bound is the stage-1 model, so a student setting leaves it
    valid (the cases above); several: it trains with the student's settings, which enter its section."""
    from mtpkdot.pipeline.graph import section

    ecg = "{kind: signal, column: ecg, backbone: cnn1d}"
    several = [f"data.modalities.ecg={ecg}", "data.prevalent=[video, ecg]"]
    one = section(_ctx(tmp_path, []), "lower_bound")
    assert "student" not in one and one["from"] == "backbone_video"
    lr = [
        section(_ctx(tmp_path, [*several, f"student.lr={v}"]), "lower_bound")["student"]["lr"] for v in (1, 2)
    ]
    assert lr == [1.0, 2.0]
