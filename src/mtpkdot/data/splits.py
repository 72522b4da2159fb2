"""Subject-wise folds, persisted with the manifest hash, and the per-fold train / val / test indices.

The protocol: 5-fold StratifiedGroupKFold by subject (or leave-one-subject-out, or the official
split for Affwild2); inside the training subjects of a fold, a validation subset of subjects selects
epochs; the test fold is touched once. The released code split by video and selected on the test
fold; here no subject is ever in two roles of a fold.

Seeds are repetitions of the cross-validation: with ``kfold``, seed s gives subject partition s
(:func:`partition`), persisted as ``folds_seed<s>.csv``, so S seeds x K folds are S independent
repetitions, as the corrected resampled t-test of the report assumes (``mtpkdot.report.stats``).
``loso`` and ``official`` have one partition whatever the seed (``folds.csv``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtpkdot.atomic import atomic_write_csv, atomic_write_text
from mtpkdot.errors import DataError
from mtpkdot.layout import RunLayout


def manifest_hash(df: pd.DataFrame) -> str:
    """Hash of the sample -> subject (-> label) assignment; paths are left out so moving data keeps folds."""
    cols = [c for c in ("sample_id", "subject_id", "label") if c in df.columns]
    body = df[cols].astype(str).sort_values("sample_id").to_csv(index=False)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def make_folds(
    manifest: pd.DataFrame, scheme: str = "kfold", n_folds: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Assign each sample a fold -> DataFrame ``sample_id, subject_id, fold``.

    ``kfold``: StratifiedGroupKFold by subject (stratified by ``label`` when present and each class has
    at least ``n_folds`` samples; otherwise GroupKFold over a seeded subject order). ``loso``: one fold per subject. ``official``: rows with ``split == "test"`` form fold 0,
    every other row gets fold -1 (never tested).
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    df = manifest[["sample_id", "subject_id"]].astype(str).reset_index(drop=True)
    subjects = df["subject_id"].to_numpy()
    n_subj = len(np.unique(subjects))
    fold = np.full(len(df), -1, dtype=np.int64)
    if scheme == "official":
        if "split" not in manifest.columns or not (manifest["split"] == "test").any():
            raise ValueError(
                "scheme 'official' needs a manifest with split == 'test' rows (an official split)"
            )
        fold[(manifest["split"] == "test").to_numpy()] = 0
    elif scheme == "loso":
        if n_subj < 2:
            raise ValueError(f"too few subjects for leave-one-subject-out: {n_subj} subject in the manifest")
        order = {s: i for i, s in enumerate(sorted(np.unique(subjects)))}
        fold = np.asarray([order[s] for s in subjects], dtype=np.int64)
    elif scheme == "kfold":
        if n_subj < n_folds:
            raise ValueError(f"too few subjects for {n_folds} folds: {n_subj} subjects in the manifest")
        # stratify by label when every fold can get each class (sklearn refuses otherwise)
        if "label" in manifest.columns and manifest["label"].value_counts().max() >= n_folds:
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            splits = splitter.split(df, manifest["label"].to_numpy(), groups=subjects)
        else:
            rng = np.random.default_rng(seed)
            perm = {s: i for i, s in enumerate(rng.permutation(np.unique(subjects)))}
            splits = GroupKFold(n_splits=n_folds).split(df, groups=[perm[s] for s in subjects])
        for k, (_, test) in enumerate(splits):
            fold[test] = k
    else:
        raise ValueError(f"unknown fold scheme {scheme!r} (kfold, loso, official)")
    df["fold"] = fold
    return df


def save_folds(path: str | Path, folds: pd.DataFrame, manifest: pd.DataFrame, **info: Any) -> Path:
    """Write ``folds.csv`` and ``folds.meta.json`` (the manifest hash plus ``info``, e.g. scheme, seed)."""
    path = Path(path)
    atomic_write_csv(folds[["sample_id", "subject_id", "fold"]], path)
    meta = {"manifest_hash": manifest_hash(manifest), **info}
    atomic_write_text(path.with_suffix(".meta.json"), json.dumps(meta, indent=1))
    return path


class StaleFoldsError(DataError):
    """A persisted fold file that does not belong to this data or this protocol (make new folds)."""


def load_folds(path: str | Path, manifest: pd.DataFrame, **expect: Any) -> pd.DataFrame:
    """Read folds written by :func:`save_folds`; raise if they were made for another manifest.

    ``expect`` (e.g. ``seed=1``) must match what :func:`save_folds` recorded in the meta file.
    """
    path = Path(path)
    meta_path = path.with_suffix(".meta.json")
    if not path.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"fold file {path} (or its {meta_path.name}) does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise StaleFoldsError(f"{meta_path} is not valid JSON ({exc})") from None
    now = manifest_hash(manifest)
    if meta.get("manifest_hash") != now:
        raise StaleFoldsError(
            f"{path} was made for another manifest (hash {meta.get('manifest_hash')}, now {now}); "
            "delete it to make new folds"
        )
    for key, want in expect.items():
        if meta.get(key) != want:
            raise StaleFoldsError(f"{path} was made with {key}={meta.get(key)!r}, expected {want!r}")
    return pd.read_csv(path, dtype={"sample_id": str, "subject_id": str})


def seed_dependent(scheme: str) -> bool:
    """Whether the seed changes the partition: only ``kfold`` has more than one way to split subjects."""
    return scheme == "kfold"


def folds_path(run_dir: str | Path, scheme: str, seed: int) -> Path:
    """Where the partition of ``seed`` lives: ``folds_seed<s>.csv`` (kfold) or ``folds.csv`` (loso, official)."""
    return RunLayout(run_dir).folds_file(seed if seed_dependent(scheme) else None)


def partition(
    run_dir: str | Path,
    manifest: pd.DataFrame,
    scheme: str = "kfold",
    n_folds: int = 5,
    seed: int = 0,
    write: bool = True,
) -> pd.DataFrame:
    """The subject partition of repetition ``seed``: read from ``run_dir``, or made and (``write``) saved.

    ``kfold``: :func:`make_folds` with ``seed``, so each seed is an independent repetition of the
    cross-validation (seed 0 gives the partition every seed used before partitions depended on it).
    ``loso`` / ``official``: one partition for every seed. A ``kfold`` run directory that holds a
    single ``folds.csv`` was made when every seed reused partition 0: mixing the two would make
    repetitions that are not independent, so it raises :class:`StaleFoldsError`.
    """
    run_dir = Path(run_dir)
    path = folds_path(run_dir, scheme, seed)
    legacy = RunLayout(run_dir).folds_file(None)
    if seed_dependent(scheme) and legacy.is_file():
        raise StaleFoldsError(
            f"{legacy} holds one k-fold partition for every seed (made by an older mtpkdot); "
            "seeds now give different partitions (folds_seed<s>.csv)"
        )
    info = (
        {"scheme": scheme, "n_folds": n_folds, "seed": seed} if seed_dependent(scheme) else {"scheme": scheme}
    )
    if path.is_file():
        return load_folds(path, manifest, **info)
    folds = make_folds(manifest, scheme, n_folds, seed)
    if write:
        save_folds(path, folds, manifest, **info)
    return folds


def fold_indices(
    store_manifest: Any,
    folds: pd.DataFrame,
    k: int,
    val_share: float = 0.2,
    seed: int = 0,
    train_subjects: int | None = None,
) -> dict[str, np.ndarray]:
    """Array indices into the store for fold ``k`` -> ``{"train", "val", "test"}``.

    Test: the samples of fold ``k``. Validation: ``round(val_share * n)`` (at least 1) of the remaining
    subjects, drawn with ``seed``; train: the other remaining subjects, or only ``train_subjects`` of
    them (low-data setting). Samples of the store missing from ``folds`` raise; samples in ``folds``
    but not in the store (left out by ``prepare``) are ignored.
    """
    df = store_manifest.manifest if hasattr(store_manifest, "manifest") else store_manifest
    sid = df["sample_id"].astype(str).to_numpy()
    subj = df["subject_id"].astype(str).to_numpy()
    fmap = dict(zip(folds["sample_id"].astype(str), folds["fold"].astype(int), strict=True))
    missing = [s for s in sid if s not in fmap]
    if missing:
        raise ValueError(
            f"{len(missing)} store samples have no fold (first: {missing[0]!r}); folds are stale"
        )
    fold = np.asarray([fmap[s] for s in sid])
    if k not in set(fold.tolist()):
        raise ValueError(f"fold {k} does not exist (folds: {sorted(set(fold.tolist()) - {-1})})")
    test = np.flatnonzero(fold == k)
    test_subj = set(subj[test])
    pool = sorted(set(subj) - test_subj)
    if len(pool) < 2:
        raise ValueError(
            f"too few training subjects in fold {k}: {len(pool)} (need 2: one to train, one to validate)"
        )
    rng = np.random.default_rng([seed, k])
    order = [pool[i] for i in rng.permutation(len(pool))]
    n_val = min(max(1, int(round(val_share * len(pool)))), len(pool) - 1)
    val_subj, train_subj = set(order[:n_val]), order[n_val:]
    if train_subjects is not None:
        if train_subjects > len(train_subj):
            raise ValueError(
                f"train_subjects={train_subjects} but fold {k} has only {len(train_subj)} training subjects"
            )
        train_subj = train_subj[:train_subjects]
    train_set = set(train_subj)
    out = {
        "train": np.flatnonzero(np.isin(subj, list(train_set))),
        "val": np.flatnonzero(np.isin(subj, list(val_subj))),
        "test": test,
    }
    check_roles_disjoint(subj, out, k)
    return out


class ProtocolError(RuntimeError):
    """The subject-wise protocol is broken (a subject in two roles): a bug, never a result to keep."""


def check_roles_disjoint(subj: np.ndarray, roles: dict[str, np.ndarray], k: int) -> None:
    """Raise :class:`ProtocolError` if a subject of ``subj`` (per store sample) has samples in two of the
    ``roles`` (train / val / test indices of fold ``k``): its samples would leak between the roles."""
    names = list(roles)
    for a, name_a in enumerate(names):
        for name_b in names[a + 1 :]:
            both = sorted(map(str, set(subj[roles[name_a]]) & set(subj[roles[name_b]])))
            if both:
                raise ProtocolError(
                    f"fold {k}: subject(s) {both[:5]} in both {name_a} and {name_b}; every subject must "
                    "have exactly one role (train, val or test) in a fold"
                )
