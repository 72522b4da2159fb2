"""Bring-your-own data: a CSV manifest plus one array file per sample and modality (docs/data.md).

``data.manifest`` is a comma-separated CSV with columns ``sample_id, subject_id, label`` (int class
0..C-1), one ``path_<modality>`` column per modality in ``data.modalities``, and optionally ``split``
(train/val/test or empty) and ``class_name``. Relative paths resolve against the manifest's folder.
``data.task: "classification:<n>"`` (or ``classification:<a>,<b>,...``) fixes the class count: a label
outside 0..n-1 is an error naming the manifest, the data row and the value.
Files: ``.npy`` (signals ``C x T`` or ``T``; video ``T x H x W x C``; features ``D``; audio a waveform),
a folder of frame images, a video file, or a biosignal CSV (``time`` plus the modality's ``column``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.reader import Reader
from mtpkdot.registry import DATASETS
from mtpkdot.signals.files import require_file

if TYPE_CHECKING:
    import pandas as pd


def read_own(data_cfg: Any) -> pd.DataFrame:
    """Your own multimodal data from a CSV manifest (any modalities, any of them privileged)."""
    import pandas as pd

    if data_cfg.manifest is None:
        raise ValueError("dataset 'own' needs data.manifest (the CSV manifest path)")
    path = Path(data_cfg.manifest)
    require_file(path, "manifest")
    try:
        df = pd.read_csv(path, dtype={"sample_id": str, "subject_id": str, "split": str})
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot parse manifest {path}: {exc}") from None
    need = ["sample_id", "subject_id", "label"] + [path_column(m) for m in data_cfg.modalities]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"manifest {path} lacks column(s) {missing} (columns: {list(df.columns)})")
    if df.empty:
        raise ValueError(f"manifest {path} has no rows")
    for col in need:
        if df[col].isna().any():
            row = int(df[col].isna().to_numpy().argmax())
            raise ValueError(f"manifest {path}: empty {col!r} in data row {row + 1}")
    labels = pd.to_numeric(df["label"], errors="coerce")
    if labels.isna().any() or (labels % 1 != 0).any() or (labels < 0).any():
        row = int((labels.isna() | (labels % 1 != 0) | (labels < 0)).to_numpy().argmax())
        raise ValueError(
            f"manifest {path}: label {_as_written(df['label'].iloc[row])!r} in data row {row + 1} is not a "
            "class index >= 0"
        )
    df["label"] = labels.astype("int64")
    _check_declared_classes(df, data_cfg, path)
    base = path.parent
    for m in data_cfg.modalities:
        col = path_column(m)
        df[col] = [str(p if Path(p).is_absolute() else (base / p)) for p in df[col].astype(str)]
    if "split" not in df.columns:
        df["split"] = ""
    return df


@DATASETS.register()
class Own(Reader):
    """Your own multimodal data from a CSV manifest (any modalities, any of them privileged)."""

    name = "own"
    read = staticmethod(read_own)


def _as_written(value: Any) -> Any:
    """A manifest cell as the user wrote it: ``-1``, not numpy's ``np.int64(-1)``."""
    return value.item() if hasattr(value, "item") else value


def _check_declared_classes(df: pd.DataFrame, data_cfg: Any, path: Path) -> None:
    """With ``data.task`` ``classification:<n>`` every label must be in 0..n-1 (the task is the contract:
    a stray label must not silently add classes)."""
    if ":" not in str(data_cfg.task):
        return  # no declared count: prepare infers it from the labels and logs it
    from mtpkdot.tasks import Task

    task = Task.from_name(str(data_cfg.task))
    if task.kind != "classification":
        raise ValueError(f"manifest {path}: data.task {data_cfg.task!r} is not a classification task")
    over = (df["label"] >= task.num_outputs).to_numpy()
    if over.any():
        row = int(over.argmax())
        raise ValueError(
            f"manifest {path}: label {int(df['label'].iloc[row])} in data row {row + 1} (sample "
            f"{df['sample_id'].iloc[row]!r}) is outside 0..{task.num_outputs - 1} of data.task "
            f"{data_cfg.task!r}"
        )
