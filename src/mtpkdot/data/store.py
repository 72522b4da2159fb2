"""A prepared store: fixed-shape arrays, memory-mapped when read (docs/internals.md, Data).

Layout of a store folder::

    manifest.csv          the kept samples; row i is index i of every array
    <modality>.npy        video uint8 N x T x H x W x 3 (Affwild2-like: N x L x T x H x W x 3),
                          signals float32 N x C x T, spectrograms float32 N x C x F x T
                          (Affwild2-like audio: N x L x 1 x F x T), features float32 N x D
    labels.npy            int64 N (classification) or float32 N x L x T x 2 (valence, arousal; NaN invalid)
    meta.json             task, shapes, dtypes, the preparation key
    prepare_report.csv    every sample of the reader's manifest: status ok/failed and the reason
    done                  written last; holds the key of the data config + manifest it was built from
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class Store:
    """Read access to a prepared store. Arrays are read-only ``np.memmap``s, so RAM stays flat."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "done").is_file():
            raise FileNotFoundError(
                f"{self.path} is not a finished store (no 'done' marker); run `mtpkdot prepare`"
            )
        self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text())

    @cached_property
    def manifest(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_csv(
            self.path / "manifest.csv",
            dtype={"sample_id": str, "subject_id": str, "split": str, "video_id": str},
            keep_default_na=False,
            na_values={"label": [""]},
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    def shape(self, modality: str) -> tuple[int, ...]:
        """Per-sample shape of ``modality`` (without the leading N)."""
        return tuple(self.meta["modalities"][modality]["shape"])

    def array(self, modality: str) -> np.ndarray:
        import numpy as np

        if modality not in self.meta["modalities"]:
            raise KeyError(f"modality {modality!r} is not in store {self.path} (has {self.modalities})")
        return np.load(self.path / f"{modality}.npy", mmap_mode="r")

    @cached_property
    def labels(self) -> np.ndarray:
        import numpy as np

        return np.load(self.path / "labels.npy")

    @property
    def task(self) -> Any:
        from mtpkdot.tasks import Task

        return Task(**self.meta["task"])

    @property
    def sequence(self) -> bool:
        """True for Affwild2-like stores (a sample is a sequence of clips, labels per frame)."""
        return bool(self.meta.get("sequence", False))

    def __len__(self) -> int:
        return int(self.meta["n"])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m}={self.shape(m)}" for m in self.modalities)
        return f"Store({str(self.path)!r}, n={len(self)}, {shapes})"
