"""The manifest: one row per sample, the common output of every dataset reader (docs/internals.md, Data).

Columns: ``sample_id`` (unique str), ``subject_id`` (str, the grouping unit of the folds), ``label``
(int class) for classification or ``annotation`` (path of a per-frame valence/arousal file) plus
``frame_start``/``frame_count`` for Affwild2-like sequences, one ``path_<modality>`` column per
modality, and ``split`` (``train``/``val``/``test`` for official splits, empty otherwise). Readers may add
columns (``class_name``, ``video_id``, ``start_frame``, ``end_frame``) that ``prepare`` understands.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mtpkdot.registry import DATASETS

if TYPE_CHECKING:
    import pandas as pd

REQUIRED = ("sample_id", "subject_id", "split")
log = logging.getLogger(__name__)


def path_column(modality: str) -> str:
    return f"path_{modality}"


def check_manifest(df: pd.DataFrame, modalities: list[str], source: str) -> pd.DataFrame:
    """Validate a reader's output; errors name ``source`` (the file or folder the manifest came from)."""
    if df.empty:
        raise ValueError(f"no samples found in {source}")
    missing = [c for c in REQUIRED if c not in df.columns]
    missing += [path_column(m) for m in modalities if path_column(m) not in df.columns]
    if "label" not in df.columns and "annotation" not in df.columns:
        missing.append("label")
    if missing:
        raise ValueError(f"{source} lacks column(s) {missing}")
    df = df.copy()
    df["sample_id"] = df["sample_id"].astype(str)
    df["subject_id"] = df["subject_id"].astype(str)
    df["split"] = df["split"].fillna("").astype(str)
    dup = df["sample_id"][df["sample_id"].duplicated()]
    if len(dup):
        raise ValueError(_duplicate_message(df, dup, modalities, source))
    bad = sorted(set(df["split"]) - {"", "train", "val", "test"})
    if bad:
        raise ValueError(f"unknown split value(s) {bad} in {source} (train, val, test or empty)")
    if "label" in df.columns:
        if df["label"].isna().any():
            row = int(df["label"].isna().to_numpy().argmax())
            raise ValueError(f"missing label for sample {df['sample_id'].iloc[row]!r} in {source}")
        df["label"] = df["label"].astype("int64")
    return df.reset_index(drop=True)


def _duplicate_message(df: pd.DataFrame, dup: pd.Series, modalities: list[str], source: str) -> str:
    """Which id repeats, in which data rows and files, and how many ids do."""
    where = (df["sample_id"] == dup.iloc[0]).to_numpy().nonzero()[0]
    rows = [str(i + 1) for i in where]
    text = f"duplicate sample_id {dup.iloc[0]!r} in {source}: data rows {', '.join(rows[:-1])} and {rows[-1]}"
    if modalities:
        text += f" ({', '.join(str(df[path_column(modalities[0])].iloc[i]) for i in where)})"
    return f"{text}; {dup.nunique()} id(s) repeat, and each sample needs its own"


def task_spec(df: pd.DataFrame, data_cfg: Any = None) -> dict[str, Any]:
    """Arguments of ``mtpkdot.tasks.Task`` for this manifest (stored in the store's meta.json).

    The task named by ``data.task`` wins when it fits the labels (so a fold or a dataset without PA2
    still has 5 classes in ``five_class``); otherwise the classes are counted from the labels and the
    count is logged. A declared ``classification:<n>`` that the labels exceed is an error, never a
    silently larger task.
    """
    # a dataset without named tasks: only an explicit "classification:<n>" / "regression:..." applies
    named = data_cfg is not None and DATASETS.get(data_cfg.dataset).tasks is not None
    if data_cfg is not None and (named or ":" in str(data_cfg.task)):
        try:
            from mtpkdot.tasks import Task

            t = Task.from_config(data_cfg)
        except (ImportError, ValueError, KeyError):
            t = None
        if t is not None:
            fits = (
                t.kind == "classification"
                and "label" in df.columns
                and int(df["label"].max()) < t.num_outputs
            ) or (t.kind == "regression" and "label" not in df.columns and t.num_outputs == 2)
            if fits:
                return {"kind": t.kind, "num_outputs": int(t.num_outputs), "names": list(t.names)}
            if t.kind == "classification" and ":" in str(data_cfg.task):
                raise ValueError(
                    f"labels up to {int(df['label'].max())} do not fit data.task {data_cfg.task!r} "
                    f"({t.num_outputs} classes)"
                )
    if "label" not in df.columns:
        return {"kind": "regression", "num_outputs": 2, "names": ["valence", "arousal"]}
    n = int(df["label"].max()) + 1
    names = [str(i) for i in range(n)]
    if "class_name" in df.columns:
        for lab, name in df.groupby("label")["class_name"].first().items():
            names[int(lab)] = str(name)
    # said, not silent: a missing top class would shrink the task without anyone noticing
    log.warning(
        "%d classes inferred from the labels (0..%d): data.task %r declares no class count that fits "
        'them; set data.task: "classification:<n>" to fix it',
        n,
        n - 1,
        getattr(data_cfg, "task", None),
    )
    return {"kind": "classification", "num_outputs": n, "names": names}


def read_manifest(data_cfg: Any) -> pd.DataFrame:
    """Run the reader named by ``data.dataset`` and validate its output."""
    df = DATASETS.get(data_cfg.dataset).read(data_cfg)
    return check_manifest(df, list(data_cfg.modalities), manifest_source(data_cfg))


def manifest_source(data_cfg: Any) -> str:
    """Where a dataset's manifest comes from, for messages: the manifest file when the config names
    one (own data has no root), else the reader and its root folder."""
    if data_cfg.manifest is not None:
        return f"manifest {data_cfg.manifest}"
    return f"the {data_cfg.dataset} reader's manifest of {data_cfg.root}"
