"""Bad inputs a user meets get a message that says what is wrong, in plain words: the manifest and
rows of a duplicate id, a label as written (no numpy repr), Inf called Inf, a FIFO called a FIFO, a file
that is no .npy or no video called so; `predict` still answers for its good inputs, and `evaluate`
refuses a folder that is no run directory as `report` does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import DataConfig
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
