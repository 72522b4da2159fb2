"""A prepared store: fixed-shape arrays, memory-mapped when read (docs/internals.md, Data).

Layout of a store folder::

    manifest.csv          the kept samples; row i is index i of every array
    <modality>.npy        video uint8 N x T x H x W x 3 (Affwild2-like: N x L x T x H x W x 3),
                          signals float32 N x C x T, spectrograms float32 N x C x F x T
                          (Affwild2-like audio: N x L x 1 x F x T), features float32 N x D
    labels.npy            int64 N (classification) or float32 N x L x T x 2 (valence, arousal; NaN invalid)
    meta.json             task, shapes, dtypes, the preparation key, each array's size and SHA-256
    prepare_report.csv    every sample of the reader's manifest: status ok/failed and the reason
    done                  written last; holds the key of the data config + manifest it was built from
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class StoreDamagedError(ValueError):
    """A store array that is missing, truncated or not what was written (a user-facing error)."""


def array_record(path: Path) -> dict[str, Any]:
    """What ``prepare`` records of a stored array (``meta.json``'s ``arrays``): its size and SHA-256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_of(path)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _size_problem(
    path: Path, shape: tuple[int, ...], dtype: str, recorded: dict[str, Any] | None
) -> str | None:
    """Why ``path`` cannot be the array of ``shape`` and ``dtype`` that was written, from its size and
    header only (no data is read); None if it can."""
    import numpy as np
    from numpy.lib import format as npy

    if not path.is_file():
        return "it is missing"
    size = path.stat().st_size
    if recorded is not None and size != recorded["bytes"]:
        return f"it has {size} bytes, {recorded['bytes']} were written"
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        with open(path, "rb") as fh:
            got_shape, _, got_dtype = readers[npy.read_magic(fh)](fh)
            need = fh.tell() + int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize
    except (KeyError, ValueError, OSError, EOFError) as exc:
        return f"its .npy header cannot be read ({exc})"
    if tuple(got_shape) != shape or str(got_dtype) != dtype:
        return f"it holds {got_dtype} {tuple(got_shape)}, the store's meta.json says {dtype} {shape}"
    if size != need:
        return f"it has {size} bytes, its shape {shape} needs {need}"
    return None


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
        if modality not in self.meta["modalities"]:
            raise KeyError(f"modality {modality!r} is not in store {self.path} (has {self.modalities})")
        return self._load(modality, mmap=True)

    @cached_property
    def labels(self) -> np.ndarray:
        return self._load("labels", mmap=False)

    def _load(self, name: str, mmap: bool) -> np.ndarray:
        import numpy as np

        path = self.path / f"{name}.npy"
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            # numpy's own message ("mmap length is greater than file size") names no file
            raise StoreDamagedError(
                f"store array {path} cannot be read ({exc}); `mtpkdot prepare` rebuilds it"
            ) from None

    @property
    def arrays(self) -> list[str]:
        """The stored arrays: every modality and the labels."""
        return [*self.modalities, "labels"]

    def damage(self, verify: bool = False) -> dict[str, str]:
        """Damaged arrays -> what is wrong. Cheap by default (sizes and headers against ``meta.json``);
        ``verify`` also compares each array's SHA-256 with the recorded one (reads the whole store).
        Stores from before the records are checked against the shapes in their ``meta.json``."""
        recorded = self.meta.get("arrays", {})
        out = {}
        for name in self.arrays:
            spec = self.meta["labels"] if name == "labels" else self.meta["modalities"][name]
            shape = (len(self), *spec["shape"])
            path = self.path / f"{name}.npy"
            problem = _size_problem(path, shape, spec["dtype"], recorded.get(name))
            if (
                problem is None
                and verify
                and name in recorded
                and sha256_of(path) != recorded[name]["sha256"]
            ):
                problem = "its SHA-256 differs from the one recorded when it was written"
            if problem is not None:
                out[name] = problem
        return out

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
