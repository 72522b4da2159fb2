"""Dataset readers on small fixtures in their real layouts, and the reader-level bad-input battery."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import DataConfig, SynthConfig
from mtpkdot.data import make_folds, prepare, read_manifest
from mtpkdot.data.synthetic import synth_affwild2, synth_biovid


def _cfg(**kw) -> DataConfig:
    kw.setdefault(
        "modalities", {"video": {"kind": "video", "segments": 4, "size": 16}, "eda": {"kind": "eda"}}
    )
    kw.setdefault("privileged", ["eda"] if "eda" in kw["modalities"] else [])
    return DataConfig(**kw)


@pytest.fixture(scope="module")
def biovid5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = SynthConfig(subjects=2, samples_per_class=1, size=16, part="B", five_class=True)
    return synth_biovid(tmp_path_factory.mktemp("r") / "b5", cfg)


def test_biovid_tasks(biovid5: Path) -> None:
    two = read_manifest(_cfg(dataset="biovid", root=biovid5, task="bl1_pa4"))
    assert len(two) == 4 and sorted(set(two["label"])) == [0, 1]
    assert set(two.loc[two["label"] == 1, "class_name"]) == {"PA4"}
    five = read_manifest(_cfg(dataset="biovid", root=biovid5, task="five_class"))
    assert len(five) == 10 and sorted(set(five["label"])) == [0, 1, 2, 3, 4]
    assert all(Path(p).is_file() for p in five["path_video"]) and all(
        Path(p).is_file() for p in five["path_eda"]
    )
    assert (five["split"] == "").all() and five["subject_id"].nunique() == 2
    raw = read_manifest(_cfg(dataset="biovid", root=biovid5, biosignals="raw"))
    assert "biosignals_raw" in raw["path_eda"].iloc[0]
    with pytest.raises(ValueError, match="unknown Biovid task 'va'"):
        read_manifest(_cfg(dataset="biovid", root=biovid5, task="va"))


def test_biovid_unknown_class_name_names_file(tmp_path: Path, biovid5: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    df = pd.read_csv(biovid5 / "samples.csv", sep="\t")
    df.loc[3, "class_name"] = "PA9"
    df.to_csv(root / "samples.csv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"samples\.csv: unknown class name 'PA9' in data row 4"):
        read_manifest(_cfg(dataset="biovid", root=root))


def test_biovid_missing_column_in_samples_csv(tmp_path: Path, biovid5: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    pd.read_csv(biovid5 / "samples.csv", sep="\t").drop(columns="class_name").to_csv(
        root / "samples.csv", sep="\t", index=False
    )
    with pytest.raises(ValueError, match=r"samples\.csv lacks column\(s\) \['class_name'\]"):
        read_manifest(_cfg(dataset="biovid", root=root))


def test_empty_folder_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data.root .*empty is an empty folder"):
        read_manifest(_cfg(dataset="biovid", root=tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        read_manifest(_cfg(dataset="biovid", root=tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"manifest .*missing\.csv does not exist"):
        read_manifest(_cfg(dataset="own", manifest=tmp_path / "missing.csv"))


def _authors_fixture(root: Path) -> None:
    lines = []
    for subj in ("071309_w_21", "080209_w_26", "081014_w_27"):
        for cls, name in ((0, "BL1"), (4, "PA4"), (2, "PA2")):
            sample = f"{subj}-{name}-001"
            folder = root / str(cls) / sample
            folder.mkdir(parents=True)
            for i in range(1, 13):
                img = np.full((24, 24, 3), 20 * i, np.uint8)
                cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), img)
            phys = root / "physio" / str(cls)
            phys.mkdir(parents=True, exist_ok=True)
            t = np.arange(3 * 512) * 1953
            pd.DataFrame({"time": t, "gsr": np.linspace(1, 2, len(t))}).to_csv(
                phys / f"{sample}_bio.csv", sep="\t", index=False
            )
            lines.append(f"{cls}/{sample} 3 10 {1 if cls == 4 else 0}")
    (root / "annotations.txt").write_text("\n".join(lines) + "\n")


def test_biovid_authors_layout(tmp_path: Path) -> None:
    _authors_fixture(tmp_path / "a")
    cfg = _cfg(dataset="biovid_authors", root=tmp_path / "a")
    man = read_manifest(cfg)
    assert len(man) == 6 and set(man["class_name"]) == {"BL1", "PA4"}  # PA2 left out by bl1_pa4
    assert set(man["subject_id"]) == {"071309_w_21", "080209_w_26", "081014_w_27"}
    assert (man["start_frame"] == 3).all() and (man["end_frame"] == 10).all()
    store = prepare(cfg, tmp_path / "store", progress=False)
    video = store.array("video")
    assert video.shape == (6, 4, 16, 16, 3)
    # frames 3..10 (8 frames), 4 segments -> offsets 1, 3, 5, 7 -> files 4, 6, 8, 10 -> levels 80..200
    np.testing.assert_allclose(video[0].reshape(4, -1).mean(axis=1), [80, 120, 160, 200], atol=3)
    assert store.array("eda").shape == (6, 1, 3 * 512)


def test_biovid_authors_bad_annotation_line(tmp_path: Path) -> None:
    _authors_fixture(tmp_path / "a")
    ann = tmp_path / "a" / "annotations.txt"
    ann.write_text(ann.read_text() + "7/x-PA4-001 1 2 1\n")
    with pytest.raises(ValueError, match=r"annotations\.txt line 10: unknown class '7'"):
        read_manifest(_cfg(dataset="biovid_authors", root=tmp_path / "a"))


@pytest.fixture(scope="module")
def affwild(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_affwild2(tmp_path_factory.mktemp("r") / "aw", SynthConfig(subjects=4, size=16, duration=3.0))


def test_affwild2_manifest(affwild: Path) -> None:
    cfg = DataConfig(
        dataset="affwild2",
        root=affwild,
        task="va",
        sequence_length=2,
        modalities={"video": {"kind": "video", "segments": 4}, "audio": {"kind": "audio"}},
        privileged=["audio"],
    )
    man = read_manifest(cfg)
    assert set(man["split"]) == {"train", "test"}
    ann = affwild / "annotations" / "VA_Estimation_Challenge"
    for vid, g in man.groupby("video_id"):
        txt = next(ann.glob(f"*/{vid}.txt"))
        assert g["frame_count"].sum() == len(txt.read_text().splitlines()) - 1  # every frame exactly once
        assert (g["frame_start"].diff().dropna() == 8).all()
        assert g["split"].iloc[0] == ("train" if txt.parent.name == "Train_Set" else "test")
    pair = man[man["video_id"].str.contains("_left|_right")]
    assert pair["subject_id"].nunique() == 1 and pair["video_id"].nunique() == 2
    assert Path(pair["path_audio"].iloc[0]).is_file()
    folds = make_folds(man, "official")
    assert set(folds.loc[man["split"] == "test", "fold"]) == {0}
