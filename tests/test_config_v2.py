"""Config version 2: the migration of version-1 files and overrides, the method sections and their
errors, ``mtpkdot config upgrade``, ``student.fusion``, and the stage sections of run folders written
before version 2 (recognised, so they resume without retraining)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mtpkdot import plugins
from mtpkdot.cli import app
from mtpkdot.config import ConfigError, config_to_dict, load_config
from mtpkdot.engine.checkpoint import config_hash
from mtpkdot.pipeline.context import FoldContext
from mtpkdot.pipeline.graph import section, stage_names, v1_section

ROOT = Path(__file__).resolve().parents[1]
ALL_METHODS = ["none", "cosine", "mse", "kl", "pkdot", "mtpkdot"]

V1 = {
    "name": "old",
    "data": {
        "dataset": "synthetic_biovid",
        "modalities": {
            "video": {"kind": "video", "train": {"epochs": 3, "lr": 0.01}},
            "eda": {"kind": "eda", "backbone": "cnn1d", "train": {"batch_size": 16}},
        },
    },
    "distill": {"alpha": 0.7, "k": 12, "centroid": "features", "temperature": 2.0},
}


@pytest.fixture(autouse=True)
def _registered() -> None:
    plugins.load()  # the method sections of distill are validated against the registered methods


def write(tmp_path: Path, data: dict, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_version_1_file_is_migrated_with_one_deprecation_line(tmp_path, caplog):
    path = write(tmp_path, V1)
    with caplog.at_level(logging.WARNING, logger="mtpkdot.config"):
        cfg = load_config(path)
    [record] = caplog.records
    assert "version 1" in record.getMessage() and "config upgrade" in record.getMessage()
    assert "\n" not in record.getMessage()
    assert (cfg.backbones["video"].epochs, cfg.backbones["video"].lr) == (3, 0.01)
    assert cfg.backbones["eda"].batch_size == 16 and cfg.backbones["eda"].epochs == 10
    d = cfg.distill
    assert d.alpha == 0.7 and d.options("pkdot").k == d.options("mtpkdot").k == 12
    assert d.options("mtpkdot").centroid == "features" and d.options("kl").temperature == 2.0


def test_a_version_2_file_reads_without_a_message(tmp_path, caplog):
    data = {"version": 2, "data": {"modalities": {"video": {"kind": "video"}, "eda": {"kind": "eda"}}}}
    with caplog.at_level(logging.WARNING, logger="mtpkdot.config"):
        cfg = load_config(write(tmp_path, data))
    assert not caplog.records and cfg.version == 2 and set(cfg.backbones) == {"video", "eda"}


def test_version_1_overrides_set_their_new_keys_with_the_message(tmp_path, caplog):
    data = {"version": 2, "data": {"modalities": {"video": {"kind": "video"}, "eda": {"kind": "eda"}}}}
    path = write(tmp_path, data)
    with caplog.at_level(logging.WARNING, logger="mtpkdot.config"):
        cfg = load_config(
            path, ["distill.k=8", "data.modalities.video.train.lr=0.5", "distill.temperature=3"]
        )
    assert cfg.distill.options("pkdot").k == cfg.distill.options("mtpkdot").k == 8
    assert cfg.backbones["video"].lr == 0.5 and cfg.distill.options("kl").temperature == 3.0
    messages = [r.getMessage() for r in caplog.records]
    assert any("distill.pkdot.k, distill.mtpkdot.k" in m for m in messages)
    assert any("backbones.video.lr" in m for m in messages)


def test_version_2_with_the_old_flat_distill_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {**V1, "version": 2}))
    text = str(err.value)
    assert "distill.centroid: moved to distill.mtpkdot.centroid in config version 2" in text
    assert "data.modalities.video.train: moved to backbones.video" in text


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("distill.mtpkdot.kk=3", "distill.mtpkdot.kk: unknown key (typo?)"),
        ("distill.kl.temperature=hot", "distill.kl.temperature: Input should be a valid number"),
        ("distill.pkdot.k=0", "distill.pkdot.k: Input should be greater than or equal to 1"),
        ("distill.cosine.k=3", "distill.cosine.k: unknown key (typo?)"),
        ("distill.mtpkdt.k=3", "distill.mtpkdt: unknown key (typo?)"),
        ("backbones.audio.lr=1", "backbones"),
    ],
)
def test_method_sections_are_checked_against_the_method(tmp_path, override, expected):
    path = write(tmp_path, {**V1, "distill": {}})
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert expected in str(err.value) and str(path) in str(err.value)


def test_config_upgrade_writes_the_same_config_in_version_2(tmp_path):
    old = write(tmp_path, V1, "old.yaml")
    new = tmp_path / "new.yaml"
    res = CliRunner().invoke(app, ["config", "upgrade", str(old), "-o", str(new)])
    assert res.exit_code == 0, res.output
    data = yaml.safe_load(new.read_text())
    assert data["version"] == 2 and "train" not in data["data"]["modalities"]["video"]
    assert data["distill"]["mtpkdot"] == {"k": 12, "centroid": "features"}
    assert config_to_dict(load_config(new)) == config_to_dict(load_config(old))


def test_shipped_configs_are_version_2():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["version"] == 2, path


def test_student_fusion_defaults_to_the_teachers(tmp_path):
    path = write(tmp_path, V1)
    cfg = load_config(path, ["teacher.fusion=mmt", "teacher.fusion_kwargs={d_model: 8}"])
    assert cfg.student_fusion() == ("mmt", {"d_model": 8})
    assert "fusion" not in config_to_dict(cfg)["student"]  # unset: the stage sections stay as before
    cfg = load_config(path, ["student.fusion=concat", "student.fusion_kwargs={hidden: 4}"])
    assert cfg.student_fusion() == ("concat", {"hidden": 4})
    with pytest.raises(ConfigError, match="student.fusion_kwargs needs student.fusion"):
        load_config(path, ["student.fusion_kwargs={hidden: 4}"])


# ------------------------------------------------------------------------ run folders of version 1
# config_hash of every stage section the version-1 code wrote for the demo config with the overrides
# below (seed 0, fold 1, the split of _ctx); a run folder holds these in its stage folders
V1_HASHES = {
    "backbone_video": "0d8d09cc216684d9",
    "backbone_eda": "7db017623b6d1e10",
    "features": "a4e77059f002d5d3",
    "teacher": "839ac2fd17768cf8",
    "tnet": "45beead810a980f0",
    "adapters": "98b6f7a1bf1844dd",
    "lower_bound": "afec2ed4ae9145a4",
    "student_none": "d7600533793416f5",
    "student_cosine": "bf118556717b8a4c",
    "student_mse": "272e909603c1af74",
    "student_kl": "50b62ac55e193f14",
    "student_pkdot": "250716c1465d1523",
    "student_mtpkdot": "fe605703258c8a90",
}
V1_OVERRIDES = [
    "data.modalities.eda.train.lr=0.5",
    "distill.k=7",
    "distill.temperature=3.0",
    "distill.centroid=features",
]


def _ctx(run_dir: Path, overrides: list[str]) -> FoldContext:
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
    split = {"train": np.arange(0, 6), "val": np.arange(6, 8), "test": np.arange(8, 10)}
    return FoldContext(cfg, None, split, run_dir, 0, 1, torch.device("cpu"), graph_section=section)


def test_version_1_sections_are_those_the_version_1_code_wrote(tmp_path):
    ctx = _ctx(tmp_path, V1_OVERRIDES)
    got = {s: config_hash(v1_section(ctx, s)) for s in stage_names(ctx.order, ALL_METHODS)}
    assert got == V1_HASHES
    # the version-2 sections differ (another modality's training left out), so the mapping is needed
    assert config_hash(section(ctx, "backbone_video")) != V1_HASHES["backbone_video"]


def test_no_version_1_section_when_version_1_could_not_say_it(tmp_path):
    assert v1_section(_ctx(tmp_path, ["distill.pkdot.k=5", "distill.mtpkdot.k=6"]), "teacher") is None
    assert v1_section(_ctx(tmp_path, ["student.fusion=concat"]), "teacher") is None


def test_a_version_1_stage_folder_is_done_and_its_checkpoint_loads(tmp_path):
    """A stage folder as the version-1 code left it (config.yaml, done, best.pt with its section)
    counts as done under version 2 and its checkpoint loads: nothing retrains."""
    from mtpkdot.engine.checkpoint import ConfigMismatchError, load_checkpoint, save_checkpoint
    from mtpkdot.layout import BEST, DONE, STAGE_CONFIG

    ctx = _ctx(tmp_path, V1_OVERRIDES)
    for stage in ("backbone_video", "student_mtpkdot"):
        old = v1_section(ctx, stage)
        d = ctx.stage_dir(stage)
        d.mkdir(parents=True)
        (d / STAGE_CONFIG).write_text(yaml.safe_dump(old, sort_keys=False))
        (d / DONE).write_text(config_hash(old) + "\n")
        save_checkpoint(d / BEST, {"modules": {}}, old)
        assert ctx.is_done(stage)
        load_checkpoint(d / BEST, ctx.recorded_section(stage))
    # a setting that changed since is still refused
    changed = _ctx(tmp_path, [*V1_OVERRIDES, "backbones.video.lr=0.123"])
    with pytest.raises(ConfigMismatchError, match="backbones|train"):
        changed.is_done("backbone_video")
