"""Own data: the declared task is the contract (not one guessed from the labels)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import DataConfig
from mtpkdot.data import prepare


def _own(tmp_path: Path, labels: list[int], task: str) -> DataConfig:
    rows = []
    for i, label in enumerate(labels):
        sid = f"s{i}"
        np.save(tmp_path / f"{sid}.npy", np.full(4, float(i)))
        rows.append([sid, f"p{i % 3}", label, f"{sid}.npy"])
    cols = ["sample_id", "subject_id", "label", "path_feat"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "manifest.csv", index=False)
    return DataConfig(
        dataset="own",
        manifest=tmp_path / "manifest.csv",
        task=task,
        modalities={"feat": {"kind": "features"}},
        prevalent=["feat"],
        privileged=[],
    )


def test_label_outside_the_declared_classes_names_manifest_row_and_value(tmp_path: Path) -> None:
    cfg = _own(tmp_path, [0, 1, 2, 3, 9, 5, 6], "classification:7")
    with pytest.raises(ValueError) as err:
        prepare(cfg, tmp_path / "store", progress=False)
    msg = str(err.value)
    assert str(tmp_path / "manifest.csv") in msg
    assert "label 9 in data row 5" in msg and "'s4'" in msg and "0..6" in msg
    assert not (tmp_path / "store" / "done").exists()


def test_declared_count_is_kept_even_when_top_classes_are_absent(tmp_path: Path) -> None:
    store = prepare(_own(tmp_path, [0, 1, 0, 1, 2, 0], "classification:7"), tmp_path / "s", progress=False)
    assert store.task.num_outputs == 7


def test_named_classes_fix_the_count_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label 2 in data row 3"):
        prepare(_own(tmp_path, [0, 1, 2], "classification:no,yes"), tmp_path / "s", progress=False)


def test_undeclared_count_is_inferred_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _own(tmp_path, [0, 1, 2, 3, 9, 5, 6], "bl1_pa4")  # own data: a named task declares nothing
    with caplog.at_level(logging.WARNING, logger="mtpkdot.data.manifest"):
        store = prepare(cfg, tmp_path / "s", progress=False)
    assert store.task.num_outputs == 10
    assert "10 classes inferred from the labels (0..9)" in caplog.text
