"""Subject-wise folds: no leakage, persistence with the manifest hash, inner validation, low-data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtpkdot.data import (
    ProtocolError,
    StaleFoldsError,
    check_roles_disjoint,
    fold_indices,
    folds_path,
    load_folds,
    make_folds,
    manifest_hash,
    partition,
    save_folds,
)


def _manifest(n_subjects: int, per_subject: int = 4, seed: int = 0, split: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for k in range(per_subject):
            rows.append(
                {"sample_id": f"s{s}-{k}", "subject_id": f"subj{s}", "label": int(rng.integers(0, 2))}
            )
    df = pd.DataFrame(rows)
    df["split"] = (
        np.where(df["subject_id"].isin([f"subj{s}" for s in range(n_subjects // 3)]), "test", "train")
        if split
        else ""
    )
    return df


def _roles(df: pd.DataFrame, idx: dict[str, np.ndarray]) -> list[set[str]]:
    return [set(df["subject_id"].iloc[idx[r]]) for r in ("train", "val", "test")]


@pytest.mark.filterwarnings("ignore:The least populated class")
@settings(max_examples=25, deadline=None)
@given(
    n_subjects=st.integers(5, 30),
    per_subject=st.integers(1, 6),
    n_folds=st.integers(2, 5),
    seed=st.integers(0, 10),
    val_share=st.floats(0.05, 0.5),
)
def test_no_subject_in_two_roles_and_every_sample_tested_once(
    n_subjects, per_subject, n_folds, seed, val_share
) -> None:
    df = _manifest(n_subjects, per_subject, seed)
    folds = make_folds(df, "kfold", n_folds, seed)
    # a subject lives in exactly one fold
    assert (folds.groupby("subject_id")["fold"].nunique() == 1).all()
    tested = []
    for k in range(n_folds):
        idx = fold_indices(df, folds, k, val_share=val_share, seed=seed)
        tr, va, te = _roles(df, idx)
        assert not (tr & va) and not (tr & te) and not (va & te)
        assert len(idx["train"]) and len(idx["val"]) and len(idx["test"])
        assert len(idx["train"]) + len(idx["val"]) + len(idx["test"]) == len(df)
        tested.extend(idx["test"].tolist())
    assert sorted(tested) == list(range(len(df)))


def test_a_subject_in_two_roles_is_an_error_naming_it() -> None:
    # a raised error, not an assert: the guard holds under python -O too
    subj = np.asarray(["a", "a", "b", "c", "c"])
    check_roles_disjoint(
        subj, {"train": np.asarray([0, 1]), "val": np.asarray([2]), "test": np.asarray([3])}, 0
    )
    leaky = {"train": np.asarray([0, 3]), "val": np.asarray([2]), "test": np.asarray([4])}
    with pytest.raises(ProtocolError, match=r"fold 2: subject\(s\) \['c'\] in both train and test"):
        check_roles_disjoint(subj, leaky, 2)


def test_too_few_subjects_names_the_count() -> None:
    with pytest.raises(ValueError, match="too few subjects for 5 folds: 3 subjects"):
        make_folds(_manifest(3), "kfold", 5)


def test_folds_are_deterministic_and_stratified() -> None:
    df = _manifest(20, 6)
    a, b = make_folds(df, "kfold", 5, seed=1), make_folds(df, "kfold", 5, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not make_folds(df, "kfold", 5, seed=2)["fold"].equals(a["fold"])
    share = df.groupby(a["fold"])["label"].mean()
    assert share.max() - share.min() < 0.35


def test_loso_and_official() -> None:
    df = _manifest(6)
    loso = make_folds(df, "loso")
    assert loso["fold"].nunique() == 6 and (loso.groupby("subject_id")["fold"].nunique() == 1).all()
    off_df = _manifest(9, split=True)
    off = make_folds(off_df, "official")
    assert set(off.loc[off_df["split"] == "test", "fold"]) == {0}
    assert set(off.loc[off_df["split"] != "test", "fold"]) == {-1}
    idx = fold_indices(off_df, off, 0, val_share=0.2)
    assert set(off_df["split"].iloc[idx["test"]]) == {"test"}
    assert set(off_df["split"].iloc[np.r_[idx["train"], idx["val"]]]) == {"train"}
    with pytest.raises(ValueError, match="official"):
        make_folds(_manifest(6), "official")


def test_low_data_train_subjects() -> None:
    df = _manifest(20)
    folds = make_folds(df, "kfold", 4)
    idx = fold_indices(df, folds, 0, val_share=0.25, train_subjects=3)
    assert len(_roles(df, idx)[0]) == 3
    with pytest.raises(ValueError, match="train_subjects=50"):
        fold_indices(df, folds, 0, train_subjects=50)


def test_save_load_checks_manifest_hash(tmp_path: Path) -> None:
    df = _manifest(10)
    folds = make_folds(df, "kfold", 5)
    save_folds(tmp_path / "folds.csv", folds, df, scheme="kfold")
    pd.testing.assert_frame_equal(load_folds(tmp_path / "folds.csv", df), folds)
    # moving the data (paths) keeps the hash; changing a label or a subject does not
    assert manifest_hash(df.assign(path_video="/elsewhere")) == manifest_hash(df)
    changed = df.copy()
    changed.loc[0, "label"] = 1 - changed.loc[0, "label"]
    with pytest.raises(ValueError, match="folds.csv was made for another manifest"):
        load_folds(tmp_path / "folds.csv", changed)


def test_store_samples_missing_from_folds_raise() -> None:
    df = _manifest(10)
    folds = make_folds(df.iloc[:-4], "kfold", 3)
    with pytest.raises(ValueError, match="have no fold"):
        fold_indices(df, folds, 0)
    # samples dropped by prepare (in folds, not in the store) are simply ignored
    idx = fold_indices(df.iloc[:-4], make_folds(df, "kfold", 3), 0)
    assert max(max(v) for v in idx.values()) < len(df) - 4


def test_each_seed_is_its_own_persisted_subject_disjoint_partition(tmp_path: Path) -> None:
    df = _manifest(20, 3)
    parts = {s: partition(tmp_path, df, "kfold", 5, s) for s in (0, 1, 2)}
    for s, folds in parts.items():
        # persisted, one file per seed, and read back unchanged
        assert folds_path(tmp_path, "kfold", s).name == f"folds_seed{s}.csv"
        pd.testing.assert_frame_equal(load_folds(folds_path(tmp_path, "kfold", s), df, seed=s), folds)
        assert (folds.groupby("subject_id")["fold"].nunique() == 1).all()
        assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    # seed 0 is the partition every seed used before; other seeds group the subjects differently
    pd.testing.assert_frame_equal(parts[0], make_folds(df, "kfold", 5, 0))

    def groups(f: pd.DataFrame) -> set[frozenset[str]]:
        return {frozenset(g) for g in f.groupby("fold")["subject_id"].unique()}

    assert groups(parts[0]) != groups(parts[1]) != groups(parts[2]) != groups(parts[0])
    # the same seed gives the same partition, from scratch or from the file
    pd.testing.assert_frame_equal(partition(tmp_path / "fresh", df, "kfold", 5, 1, write=False), parts[1])
    pd.testing.assert_frame_equal(partition(tmp_path, df, "kfold", 5, 1), parts[1])
    assert not (tmp_path / "fresh").exists()


def test_partition_refuses_a_file_of_another_seed_and_the_old_shared_layout(tmp_path: Path) -> None:
    df = _manifest(12)
    partition(tmp_path, df, "kfold", 3, 0)
    folds_path(tmp_path, "kfold", 0).rename(tmp_path / "folds_seed1.csv")
    (tmp_path / "folds_seed0.meta.json").rename(tmp_path / "folds_seed1.meta.json")
    with pytest.raises(StaleFoldsError, match="made with seed=0, expected 1"):
        partition(tmp_path, df, "kfold", 3, 1)
    old = tmp_path / "old"
    save_folds(old / "folds.csv", make_folds(df, "kfold", 3), df, scheme="kfold", n_folds=3, seed=0)
    with pytest.raises(StaleFoldsError, match="one k-fold partition for every seed"):
        partition(old, df, "kfold", 3, 2)


def test_loso_and_official_keep_one_partition_for_every_seed(tmp_path: Path) -> None:
    df = _manifest(6)
    a, b = partition(tmp_path, df, "loso", seed=0), partition(tmp_path, df, "loso", seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert [p.name for p in tmp_path.glob("folds*.csv")] == ["folds.csv"]
    off_df = _manifest(9, split=True)
    off = partition(tmp_path / "off", off_df, "official", seed=2)
    pd.testing.assert_frame_equal(off, make_folds(off_df, "official"))


def test_inner_validation_split_depends_on_seed_and_fold_only() -> None:
    df = _manifest(20)
    folds = make_folds(df, "kfold", 4, 0)
    val = {(s, k): fold_indices(df, folds, k, 0.25, seed=s)["val"] for s in (0, 1) for k in (0, 1)}
    np.testing.assert_array_equal(val[(1, 1)], fold_indices(df, folds, 1, 0.25, seed=1)["val"])
    assert not np.array_equal(val[(0, 0)], val[(1, 0)])
