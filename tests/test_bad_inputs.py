"""Bad inputs a user meets get a message that says what is wrong, in plain words: the manifest and
rows of a duplicate id, a label as written (no numpy repr), Inf called Inf, a FIFO called a FIFO, a file
that is no .npy or no video called so; `predict` still answers for its good inputs, and `evaluate`
refuses a folder that is no run directory as `report` does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mtpkdot.cli import app
from mtpkdot.config import DataConfig, ModalityConfig
from mtpkdot.data import prepare

fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


# --------------------------------------------------------------------------------------- own data
def _own(tmp_path: Path, n: int = 6, **columns) -> DataConfig:
    """An own-data manifest of ``n`` samples (a 1 x 64 signal and a 4-vector each); ``columns``
    replaces whole manifest columns."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        np.save(tmp_path / f"s{i}_sig.npy", rng.normal(size=(1, 64)))
        np.save(tmp_path / f"s{i}_feat.npy", rng.normal(size=4))
        rows.append({"sample_id": f"s{i}", "subject_id": f"p{i % 3}", "label": i % 2,
                     "path_sig": f"s{i}_sig.npy", "path_feat": f"s{i}_feat.npy"})  # fmt: skip
    df = pd.DataFrame(rows)
    for name, values in columns.items():
        df[name] = values
    df.to_csv(tmp_path / "manifest.csv", index=False)
    return DataConfig(
        dataset="own",
        manifest=tmp_path / "manifest.csv",
        modalities={"sig": {"kind": "signal", "sample_rate": 32}, "feat": {"kind": "features"}},
        prevalent=["sig"],
        privileged=["feat"],
    )


def _reasons(tmp_path: Path, cfg: DataConfig) -> dict[str, str]:
    store = prepare(cfg, tmp_path / "store", progress=False)
    report = pd.read_csv(store.path / "prepare_report.csv", keep_default_na=False)
    return dict(zip(report["sample_id"], report["reason"], strict=True))


def test_duplicate_id_names_the_manifest_and_its_rows(tmp_path: Path) -> None:
    cfg = _own(tmp_path, sample_id=["s0", "s1", "s2", "s1", "s4", "s5"])
    with pytest.raises(ValueError) as err:
        prepare(cfg, tmp_path / "store", progress=False)
    msg = str(err.value)
    assert "None" not in msg and str(tmp_path / "manifest.csv") in msg
    assert "'s1'" in msg and "data rows 2 and 4" in msg, msg


def test_a_bad_label_is_shown_as_written_not_as_a_numpy_repr(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        prepare(_own(tmp_path, label=[0, 1, -1, 1, 0, 1]), tmp_path / "store", progress=False)
    msg = str(err.value)
    assert "label -1 in data row 3" in msg and "np." not in msg, msg


def test_infinite_values_are_called_inf_and_nan_values_nan(tmp_path: Path) -> None:
    np.save(tmp_path / "inf.npy", np.full((1, 64), np.inf))
    np.save(tmp_path / "nan.npy", np.full((1, 64), np.nan))
    paths = ["inf.npy", "nan.npy"] + [f"s{i}_sig.npy" for i in range(2, 6)]
    reasons = _reasons(tmp_path, _own(tmp_path, path_sig=paths))
    assert "inf.npy" in reasons["s0"] and "non-finite (Inf)" in reasons["s0"] and "NaN" not in reasons["s0"]
    assert "nan.npy" in reasons["s1"] and "NaN values" in reasons["s1"] and "Inf" not in reasons["s1"]


def test_an_infinite_feature_vector_is_called_inf(tmp_path: Path) -> None:
    """Features are not read as a signal: the check of the finished arrays names the kind too."""
    cfg = _own(tmp_path)
    np.save(tmp_path / "s0_feat.npy", np.asarray([1.0, np.inf, 2.0, 3.0]))
    reasons = _reasons(tmp_path, cfg)
    assert "non-finite (Inf)" in reasons["s0"] and "NaN" not in reasons["s0"], reasons["s0"]


@fifo_only
def test_a_fifo_is_called_a_fifo_not_missing(tmp_path: Path) -> None:
    cfg = _own(tmp_path)
    os.remove(tmp_path / "s0_sig.npy")
    os.mkfifo(tmp_path / "s0_sig.npy")
    reasons = _reasons(tmp_path, cfg)
    assert "FIFO" in reasons["s0"] and "not a regular file" in reasons["s0"]
    assert "does not exist" not in reasons["s0"]


@fifo_only
def test_a_fifo_manifest_is_called_a_fifo(tmp_path: Path) -> None:
    cfg = _own(tmp_path)
    os.remove(tmp_path / "manifest.csv")
    os.mkfifo(tmp_path / "manifest.csv")
    with pytest.raises(ValueError, match=r"manifest .*manifest\.csv is a FIFO \(named pipe\), not a regular"):
        prepare(cfg, tmp_path / "store", progress=False)


def test_a_file_that_is_no_npy_gets_no_pickle_advice(tmp_path: Path) -> None:
    cfg = _own(tmp_path)
    (tmp_path / "s0_sig.npy").write_text("time,gsr\n0,1\n")  # a CSV with a .npy name
    reason = _reasons(tmp_path, cfg)["s0"]
    assert "s0_sig.npy" in reason and "pickle" not in reason
    assert "not a valid .npy file" in reason and "does not start with the .npy header" in reason


def test_a_file_that_is_no_video_is_called_so(tmp_path: Path) -> None:
    from mtpkdot.signals import SampleError
    from mtpkdot.signals.video import decode_frames

    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(SampleError) as err:
        decode_frames(fake)
    msg = str(err.value)
    assert f"cannot open video {fake}: not a video the decoder can read" in msg and "Errno" not in msg, msg


# ------------------------------------------------------------------------------------ predict
def _bundle(path: Path) -> Path:
    """A real student bundle with random weights: a 2 x 8 x 8 video item, one privileged T-Net."""
    from torch import nn

    from mtpkdot import plugins
    from mtpkdot.models import TNet, build_backbone, build_fusion, input_kwargs
    from mtpkdot.pipeline.bundle import FORMAT

    plugins.load()
    torch.manual_seed(0)
    mc = ModalityConfig(kind="video", face="none", segments=2, size=8, backbone="tiny3d",
                        backbone_kwargs={"width": 2}, feature_dim=4)  # fmt: skip
    shape = (2, 8, 8, 3)
    backbone = build_backbone("tiny3d", out_dim=4, **input_kwargs("tiny3d", shape, mc.backbone_kwargs))
    tnets = nn.ModuleDict({"eda": TNet(4, 4, hidden=[4])})
    fusion = build_fusion("concat", [4, 4], 2)
    torch.save(
        {
            "format": FORMAT, "method": "mtpkdot", "seed": 0, "fold": 1,
            "task": {"kind": "classification", "num_outputs": 2, "names": ["BL1", "PA4"]},
            "order": ["video", "eda"], "prevalent": ["video"], "privileged": ["eda"],
            "feature_dims": {"video": 4, "eda": 4}, "modalities": {"video": mc.model_dump(mode="json")},
            "item_shapes": {"video": shape}, "fusion_name": "concat", "fusion_kwargs": {},
            "sequence_length": 1, "tnet_hidden": [4], "backbones": {"video": backbone.state_dict()},
            "norms": {"video": {"mean": None, "std": None}}, "tnets": tnets.state_dict(),
            "fusion": fusion.state_dict(),
        },
        path,
    )  # fmt: skip
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return _bundle(tmp_path / "student.pt")


def _predict(*args: Path):
    res = CliRunner().invoke(app, ["predict", *map(str, args)])
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return res, rows


def test_predict_answers_for_the_good_inputs_and_names_the_bad_one(bundle: Path, tmp_path: Path) -> None:
    good = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for g in good:
        np.save(g, np.zeros((2, 8, 8, 3), np.uint8))
    bad = tmp_path / "bad.npy"
    bad.write_text("hello\n")
    res, rows = _predict(bundle, good[0], bad, good[1], tmp_path / "gone.npy")
    assert [r["input"] for r in rows] == [str(g) for g in good], res.output
    assert res.exit_code == 2  # the user-error code, as for any other bad input
    assert f"{bad} (not a valid .npy file" in res.stderr and "pickle" not in res.stderr
    assert f"{tmp_path / 'gone.npy'} does not exist" in res.stderr
    assert "2 of 4 inputs" in res.stderr and "Traceback" not in res.output


@fifo_only
def test_predict_calls_a_fifo_input_a_fifo(bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "clip"
    os.mkfifo(fifo)
    res, rows = _predict(bundle, fifo)
    assert res.exit_code == 2 and rows == []
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in res.stderr, res.output


def test_predict_calls_a_fake_video_no_video(bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    res, _ = _predict(bundle, fake)
    assert res.exit_code == 2 and f"video {fake}: not a video the decoder can read" in res.stderr, res.output


def test_the_python_api_still_raises_at_a_bad_input(bundle: Path, tmp_path: Path) -> None:
    from mtpkdot.pipeline.bundle import predict

    np.save(tmp_path / "a.npy", np.zeros((2, 8, 8, 3), np.uint8))
    assert len(predict(bundle, [tmp_path / "a.npy"])) == 1
    with pytest.raises(FileNotFoundError, match="gone.npy does not exist"):
        predict(bundle, [tmp_path / "a.npy", tmp_path / "gone.npy"])


# ------------------------------------------------------------------------------------ run dirs
def test_evaluate_refuses_a_folder_that_is_no_run_as_report_does(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    runner = CliRunner()
    report = runner.invoke(app, ["report", str(empty)])
    evaluate = runner.invoke(app, ["evaluate", str(empty)])
    assert report.exit_code == evaluate.exit_code == 2, evaluate.output
    assert "is not a run directory" in evaluate.stderr
    assert list(empty.iterdir()) == []  # nothing written into the wrong folder
