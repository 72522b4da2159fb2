from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtpkdot import plugins
from mtpkdot.config import Config, ConfigError, apply_overrides, dump_config, load_config


@pytest.fixture(autouse=True)
def _registered() -> None:
    plugins.load()  # the method sections of distill are validated against the registered methods


MINIMAL = {
    "version": 2,
    "name": "t",
    "data": {
        "dataset": "synthetic_biovid",
        "root": "data",
        "modalities": {"video": {"kind": "video"}, "eda": {"kind": "eda", "backbone": "cnn1d"}},
        "prevalent": ["video"],
        "privileged": ["eda"],
    },
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_follow_the_paper(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert (cfg.distill.alpha, cfg.distill.beta, cfg.distill.gamma) == (0.8, 0.2, 0.2)
    own = cfg.distill.options("mtpkdot")
    assert own.k == 30 and own.blur == 0.1 and own.scaling == 0.5
    assert cfg.student.batch_size == 128 and cfg.student.lr == 1e-4
    assert own.centroid == "similarity"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.data.root == (tmp_path / "data").resolve()


def test_dotted_overrides_are_parsed_as_yaml(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, MINIMAL),
        [
            "student.lr=5e-4",
            "distill.mtpkdot.centroid=features",
            "seeds=[0, 1]",
            "student.finetune_backbone=true",
        ],
    )
    assert cfg.student.lr == 5e-4
    assert cfg.distill.options("mtpkdot").centroid == "features"
    assert cfg.seeds == [0, 1]
    assert cfg.student.finetune_backbone is True


def test_typo_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "studnet": {"lr": 1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "studnet" in str(err.value) and str(path) in str(err.value) and "unknown key" in str(err.value)


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"student\.lr"):
        load_config(write(tmp_path, MINIMAL), ["student.lr=fast"])


def test_override_typo_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill\.anchors"):
        load_config(write(tmp_path, MINIMAL), ["distill.anchors=10"])


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["student.lr"])


def test_privileged_modality_must_exist(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["data"]["privileged"] = ["emg"]
    with pytest.raises(ConfigError, match="emg"):
        load_config(write(tmp_path, data))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), ["distill.mtpkdot.k=10"])
    out = tmp_path / "run" / "config.yaml"
    dump_config(cfg, out)
    again = Config.model_validate(yaml.safe_load(out.read_text()))
    assert again == cfg
    assert not list(out.parent.glob(".*.tmp"))


def test_command_line_paths_resolve_against_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    path = write(cfg_dir, MINIMAL)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(path, ["data.root=synth", "data.modalities.video.weights=w/r3d.pth"])
    assert cfg.data.root == (work / "synth").resolve()
    assert cfg.data.modalities["video"].weights == (work / "w" / "r3d.pth").resolve()
    untouched = load_config(path, ["student.lr=1e-3"])
    assert untouched.data.root == (cfg_dir / "data").resolve()
