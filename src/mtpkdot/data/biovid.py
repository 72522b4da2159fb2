"""Biovid Heat Pain readers: the official layout (parts A and B) and the layout of the authors' code.

Official layout (``data.root``)::

    samples.csv                                   tab separated: subject_id subject_name class_id
                                                  class_name sample_id sample_name
    video/<subject_name>/<sample_name>.mp4
    biosignals_filtered/<subject_name>/<sample_name>_bio.csv   (or biosignals_raw/, data.biosignals)

Authors' layout (``data.root``, as the released code reads it)::

    <class>/<sample_name>/img_00001.jpg ...       class folder 0..4 (BL1, PA1..PA4)
    physio/<class>/<sample_name>_bio.csv          optional, for biosignal modalities
    annotation file (``data.manifest``, default <root>/annotations.txt): lines
        <class>/<sample_name> <start> <end> <label>      start/end 1-based, end inclusive

Tasks (``data.task``): ``bl1_pa4`` keeps BL1 and PA4 samples, labels 0/1; ``five_class`` labels 0..4.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.reader import Reader
from mtpkdot.registry import DATASETS

if TYPE_CHECKING:
    import pandas as pd

CLASS_NAMES = ["BL1", "PA1", "PA2", "PA3", "PA4"]
TASKS = {"bl1_pa4": {"BL1": 0, "PA4": 1}, "five_class": {c: i for i, c in enumerate(CLASS_NAMES)}}
SAMPLES_COLUMNS = ["subject_id", "subject_name", "class_id", "class_name", "sample_id", "sample_name"]
SIGNAL_KINDS = ("eda", "emg", "signal")


def task_classes(task: str) -> dict[str, int]:
    if task not in TASKS:
        raise ValueError(f"unknown Biovid task {task!r} in data.task; choose one of {sorted(TASKS)}")
    return TASKS[task]


def _root(data_cfg: Any) -> Path:
    if data_cfg.root is None:
        raise ValueError(f"data.root must be set for dataset {data_cfg.dataset!r}")
    root = Path(data_cfg.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} does not exist or is not a folder")
    if not any(root.iterdir()):
        raise ValueError(f"data.root {root} is an empty folder")
    return root


def _check_kinds(data_cfg: Any, allowed: tuple[str, ...]) -> None:
    for name, m in data_cfg.modalities.items():
        if m.kind not in allowed:
            raise ValueError(
                f"modality {name!r} has kind {m.kind!r}, which dataset {data_cfg.dataset!r} cannot provide "
                f"(allowed: {', '.join(allowed)})"
            )


def read_biovid(data_cfg: Any) -> pd.DataFrame:
    """Biovid official layout (parts A and B): samples.csv, video/, biosignals_filtered/ (or raw)."""
    import pandas as pd

    root = _root(data_cfg)
    classes = task_classes(data_cfg.task)
    _check_kinds(data_cfg, ("video", *SIGNAL_KINDS))
    csv = root / "samples.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} does not exist (expected the Biovid official layout under {root})")
    try:
        df = pd.read_csv(csv, sep="\t", dtype={"subject_name": str, "sample_name": str, "class_name": str})
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot parse {csv}: {exc}") from None
    missing = [c for c in SAMPLES_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{csv} lacks column(s) {missing} (columns: {list(df.columns)}; tab separated?)")
    if df[SAMPLES_COLUMNS].isna().any().any():
        row = int(df[SAMPLES_COLUMNS].isna().any(axis=1).to_numpy().argmax())
        raise ValueError(f"{csv}: empty field in data row {row + 1}")
    unknown = sorted(set(df["class_name"]) - set(CLASS_NAMES))
    if unknown:
        row = int((~df["class_name"].isin(CLASS_NAMES)).to_numpy().argmax())
        raise ValueError(
            f"{csv}: unknown class name {unknown[0]!r} in data row {row + 1} (known: {CLASS_NAMES})"
        )
    df = df[df["class_name"].isin(list(classes))].reset_index(drop=True)
    if df.empty:
        raise ValueError(
            f"{csv} holds no sample of the classes {sorted(classes)} needed by task {data_cfg.task}"
        )
    out = pd.DataFrame(
        {
            "sample_id": df["sample_name"].astype(str),
            "subject_id": df["subject_name"].astype(str),
            "label": df["class_name"].map(classes).astype("int64"),
            "class_name": df["class_name"],
        }
    )
    bio_dir = root / f"biosignals_{data_cfg.biosignals}"
    for name, m in data_cfg.modalities.items():
        if m.kind == "video":
            paths = [
                root / "video" / s / f"{n}.mp4"
                for s, n in zip(df["subject_name"], df["sample_name"], strict=True)
            ]
        else:
            paths = [
                bio_dir / s / f"{n}_bio.csv"
                for s, n in zip(df["subject_name"], df["sample_name"], strict=True)
            ]
        out[path_column(name)] = [str(p) for p in paths]
    out["split"] = ""
    return out


@DATASETS.register()
class Biovid(Reader):
    """Biovid official layout (parts A and B): samples.csv, video/, biosignals_filtered/ (or raw)."""

    name = "biovid"
    tasks = tuple(TASKS)
    fixed_camera = True
    read = staticmethod(read_biovid)


def _authors_annotation(data_cfg: Any, root: Path) -> Path:
    ann = Path(data_cfg.manifest) if data_cfg.manifest is not None else root / "annotations.txt"
    if not ann.is_file():
        raise FileNotFoundError(
            f"annotation file {ann} does not exist (set data.manifest to the annotation file)"
        )
    return ann


def read_biovid_authors(data_cfg: Any) -> pd.DataFrame:
    """Biovid in the authors' layout: ``<class>/<sample>/img_*.jpg`` frame folders + annotation lines."""
    import pandas as pd

    root = _root(data_cfg)
    classes = task_classes(data_cfg.task)
    _check_kinds(data_cfg, ("video", *SIGNAL_KINDS))
    ann = _authors_annotation(data_cfg, root)
    rows = []
    for lineno, line in enumerate(ann.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(
                f"{ann} line {lineno}: expected '<class>/<sample> <start> <end> <label>', got {line!r}"
            )
        rel, start, end, _label = parts
        if "/" not in rel:
            raise ValueError(f"{ann} line {lineno}: {rel!r} is not <class>/<sample_name>")
        cls, sample = rel.split("/", 1)
        try:
            class_name = CLASS_NAMES[int(cls)]
            start_i, end_i = int(start), int(end)
        except (ValueError, IndexError):
            raise ValueError(
                f"{ann} line {lineno}: unknown class {cls!r} or non-integer frame range"
            ) from None
        if start_i < 1 or end_i < start_i:
            raise ValueError(
                f"{ann} line {lineno}: frame range {start_i}..{end_i} must be 1-based and increasing"
            )
        if class_name not in classes:
            continue
        rows.append(
            {
                "sample_id": sample,
                # Biovid sample names are <subject>-<class>-<nnn>; the subject is what the folds group by.
                "subject_id": sample.rsplit("-", 2)[0] if sample.count("-") >= 2 else sample,
                "label": classes[class_name],
                "class_name": class_name,
                "start_frame": start_i,
                "end_frame": end_i,
                "_rel": rel,
            }
        )
    if not rows:
        raise ValueError(
            f"{ann} lists no sample of the classes {sorted(classes)} needed by task {data_cfg.task}"
        )
    out = pd.DataFrame(rows)
    for name, m in data_cfg.modalities.items():
        if m.kind == "video":
            out[path_column(name)] = [str(root / r) for r in out["_rel"]]
        else:
            out[path_column(name)] = [str(root / "physio" / f"{r}_bio.csv") for r in out["_rel"]]
    out["split"] = ""
    return out.drop(columns="_rel")


@DATASETS.register()
class BiovidAuthors(Reader):
    """Biovid in the authors' layout: ``<class>/<sample>/img_*.jpg`` frame folders + annotation lines."""

    name = "biovid_authors"
    tasks = tuple(TASKS)
    fixed_camera = True
    read = staticmethod(read_biovid_authors)


def read_synthetic_biovid(data_cfg: Any) -> pd.DataFrame:
    """Embedded Biovid-like data: generated into data.root if missing or empty, read as biovid."""
    from mtpkdot.data.synthetic import ensure_generated

    ensure_generated(data_cfg, "biovid")
    return read_biovid(data_cfg)


@DATASETS.register()
class SyntheticBiovid(Reader):
    """Embedded Biovid-like data: generated into data.root if missing or empty, read as biovid."""

    name = "synthetic_biovid"
    tasks = tuple(TASKS)
    fixed_camera = True
    read = staticmethod(read_synthetic_biovid)
