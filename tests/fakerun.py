"""A test fixture: a fake run directory with plausible numbers from a seeded RNG, for the report tests.

Every path comes from :mod:`mtpkdot.layout` (the module the pipeline writes through), and the run-level
files are written by the pipeline's own writers: ``config.yaml`` and ``config.hash`` are a real ``Config``
(the demo's, with the fake's seeds, folds, methods and task) dumped as a run dumps it, the partitions go
through ``save_folds`` (with their ``.meta.json``). Folds are numbered from 1 in folder names and
summary.csv (the folds files keep the data side's 0-based numbering), ``split.csv`` names each sample's
subject and role, students log the untrained model as epoch 0 (validation only), other stages start at
epoch 1. ``tests/test_report_real.py`` compares the fake with a real tiny run, so a drift fails there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtpkdot import layout
from mtpkdot.atomic import atomic_save_npz, atomic_write_csv
from mtpkdot.data.splits import save_folds
from mtpkdot.layout import RunLayout
from mtpkdot.pipeline.demo import demo_config
from mtpkdot.pipeline.experiment import check_run_dir

# Mean gain over the student without distillation per method (accuracy points); the teacher is the
# upper bound, and the T-Net's hallucinated features put ``none`` a little above ``lower_bound``.
DEFAULT_EFFECTS = {
    "lower_bound": -1.0,
    "none": 0.0,
    "cosine": 0.6,
    "mse": 0.3,
    "kl": -0.4,
    "pkdot": 1.8,
    "mtpkdot": 2.4,
    "teacher": 9.0,
}
ALL_METHODS = ("lower_bound", "none", "cosine", "mse", "kl", "pkdot", "mtpkdot", "teacher")


def _cos_sim(x: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-8)
    return x @ x.T


def _metrics_frame(
    rng: np.random.Generator, epochs: int, terms: Sequence[str], val: Sequence[str]
) -> pd.DataFrame:
    e = np.arange(epochs)
    data: dict[str, np.ndarray] = {"epoch": e + 1, "lr": np.full(epochs, 1e-3)}
    for i, t in enumerate(terms):
        start = [0.7, 0.05, 0.02, 0.3, 0.5][i % 5]
        data[f"train_{t}"] = start * np.exp(-e / (epochs / 2)) + rng.uniform(0.001, 0.01, epochs)
    for v in val:
        data[f"val_{v}"] = (60 if v.startswith("accuracy") else 0.3) * (
            1 + 0.2 * (1 - np.exp(-e / 3))
        ) + rng.normal(0, 0.5 if v.startswith("accuracy") else 0.01, epochs)
    if "total" not in terms and terms:
        data["train_total"] = sum(data[f"train_{t}"] for t in terms)
    return pd.DataFrame(data)


STUDENT_TERMS = {
    "none": ["task"],
    "cosine": ["task", "cosine"],
    "mse": ["task", "mse"],
    "kl": ["task", "kl"],
    "pkdot": ["task", "ot"],
    "mtpkdot": ["task", "ot", "centroid"],
}


def make_fake_run(
    path: str | Path,
    *,
    seeds: Sequence[int] = (0, 1),
    folds: int = 3,
    methods: Sequence[str] = ALL_METHODS,
    task: str = "classification",
    effects: Mapping[str, float] | None = None,
    noise: float = 1.0,
    rng_seed: int = 0,
    batch: int = 16,
    tsne_samples: int = 30,
    epochs: int = 4,
    fold_dirs: bool = True,
    snapshots: bool = True,
    tsne: bool = True,
) -> Path:
    """Write a fake run directory at ``path`` and return it.

    ``task="classification"`` gives an ``accuracy`` column (percent); ``"regression"`` gives
    ``ccc_valence``, ``ccc_arousal`` and ``ccc_mean``. ``effects`` overrides the per-method gains
    (in accuracy points, scaled by 1/100 for CCC).
    """
    path = Path(path)
    run = RunLayout(path)
    rng = np.random.default_rng(rng_seed)
    eff = dict(DEFAULT_EFFECTS, **(effects or {}))
    regression = task == "regression"
    metrics = ["ccc_valence", "ccc_arousal"] if regression else ["accuracy"]
    students = [m for m in methods if m not in ("teacher", layout.LOWER_BOUND)]
    overrides = [
        f"name={path.name}",
        f"seeds=[{', '.join(str(x) for x in seeds)}]",
        f"protocol.folds={folds}",
        f"student.methods=[{', '.join(students)}]",
        f"student.batch_size={batch}",
        f"student.epochs={epochs}",
    ]
    if regression:
        overrides += ["data.dataset=synthetic_affwild2", "data.task=va"]
    path.mkdir(parents=True, exist_ok=True)
    check_run_dir(demo_config(path, overrides), path, write=True)  # config.yaml and config.hash
    subjects = np.arange(folds * 4)
    partitions = {}
    for seed in seeds:  # one subject partition per seed, as the pipeline persists them
        perm = np.random.default_rng(seed).permutation(subjects)
        part = pd.DataFrame(
            {
                "sample_id": [f"s{s}_{i}" for s in perm for i in range(3)],
                "subject_id": [f"s{s}" for s in np.repeat(perm, 3)],
                "fold": np.repeat(np.arange(len(perm)) % folds, 3),
            }
        )
        save_folds(run.folds_file(seed), part, part, scheme="kfold", n_folds=folds, seed=seed)
        partitions[seed] = part
    rows = []
    for seed in seeds:
        for fold in range(1, folds + 1):  # the run directory's numbering
            base = 70.0 + rng.normal(0, 2.0)  # folds differ more than methods: the reason to pair
            for m in methods:
                value = base + eff.get(m, 0.0) + rng.normal(0, noise)
                row = {"seed": seed, "fold": fold, "method": m}
                if regression:
                    row["ccc_valence"] = round((value - 30) / 100, 6)
                    row["ccc_arousal"] = round((value - 20) / 100 + rng.normal(0, 0.01), 6)
                    row["ccc_mean"] = round((row["ccc_valence"] + row["ccc_arousal"]) / 2, 6)
                else:
                    row["accuracy"] = round(value, 6)
                row["n_test"] = 12  # 4 test subjects x 3 samples, as in split.csv
                rows.append(row)
            if fold_dirs:
                atomic_write_csv(_split(partitions[seed], fold), run.fold(seed, fold).split_csv)
                _fake_fold(
                    run.fold(seed, fold).path,
                    rng,
                    methods,
                    metrics,
                    epochs,
                    batch,
                    tsne_samples,
                    snapshots=snapshots,
                    tsne=tsne,
                )
    atomic_write_csv(pd.DataFrame(rows), run.summary)
    return path


def _split(part: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The fold's test subjects (4), one validation subject, the rest training; columns as the pipeline's."""
    test = part["fold"] == fold - 1
    val_subject = part.loc[~test, "subject_id"].iloc[0]
    role = np.where(test, "test", np.where(part["subject_id"] == val_subject, "val", "train"))
    split = part[["sample_id", "subject_id"]].assign(role=role)
    return pd.concat([split[split["role"] == r] for r in ("train", "val", "test")])


def _fake_fold(
    fd: Path,
    rng: np.random.Generator,
    methods: Sequence[str],
    metrics: Sequence[str],
    epochs: int,
    batch: int,
    n: int,
    *,
    snapshots: bool,
    tsne: bool,
) -> None:
    val = ["ccc_mean"] if "ccc_valence" in metrics else ["accuracy"]
    per_mod = [f"{v}_{m}" for v in val for m in ("video", "eda")]
    for stage, terms, vals in (
        (layout.backbone_stage("video"), ["task"], val),
        (layout.backbone_stage("eda"), ["task"], val),
        (layout.TEACHER, ["task"], val),
        ("tnet", ["mse_eda", "cos_eda"], ["loss"]),
        (layout.ADAPTERS, ["align", "task_video", "task_eda"], ["loss", *per_mod]),
    ):
        (fd / stage).mkdir(parents=True, exist_ok=True)
        atomic_write_csv(_metrics_frame(rng, epochs, terms, vals), fd / stage / layout.METRICS)
    for m in methods:
        if m == "teacher":
            continue
        sd = fd / layout.student_stage(m)
        sd.mkdir(parents=True, exist_ok=True)
        df = _metrics_frame(rng, epochs, STUDENT_TERMS.get(m, ["task"]), val)
        # epoch 0: the untrained student, validation only (train_* empty), as the student stages log it
        untrained = {
            "epoch": 0,
            "lr": df["lr"].iloc[0],
            **{f"val_{v}": df[f"val_{v}"].iloc[0] - 5 for v in val},
        }
        df = pd.concat([pd.DataFrame([untrained]), df], ignore_index=True)
        if m == "mtpkdot":
            batches = 10
            for e in range(1, epochs + 1):
                p = rng.dirichlet([8, 2, 1])
                counts = rng.multinomial(batches, p)
                for name, c in zip(("joint", "video", "eda"), counts, strict=True):
                    df.loc[e, f"sel_{name}"] = c
        atomic_write_csv(df, sd / layout.METRICS)
        if snapshots:  # every student writes its similarity snapshots
            y = rng.integers(0, 2, batch)
            teacher = rng.normal(0, 0.3, (batch, 8)) + np.eye(8)[y * 3]
            noise = rng.normal(0, 1, (batch, 8))
            snaps = {"teacher": _cos_sim(teacher)}
            for pct in (0, 50, 75, 100):
                w = pct / 100
                snaps[f"student_{pct}"] = _cos_sim(w * teacher + (1 - w) * noise)
            atomic_save_npz(sd / layout.SNAPSHOTS, **snaps)
    if tsne:
        labels = rng.integers(0, 2, n)
        center = np.eye(6)[labels] * 3
        arrays = {"labels": labels}
        for i, name in enumerate(("video", "eda", "joint")):
            offset = np.zeros(6)
            offset[2 + i] = 6.0  # before alignment each teacher sits in its own region
            arrays[f"before_{name}"] = center + offset + rng.normal(0, 0.5, (n, 6))
            arrays[f"after_{name}"] = center + rng.normal(0, 0.5, (n, 6))
        atomic_save_npz(fd / layout.ADAPTERS / layout.TSNE, **arrays)
