"""One manifest row -> its arrays: the sequence or the single-sample path, and the check for NaN or Inf."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtpkdot.data.manifest import path_column
from mtpkdot.data.prepare.kinds import single_sample
from mtpkdot.data.prepare.options import PrepareStats
from mtpkdot.data.prepare.sequences import sequence_sample
from mtpkdot.signals.errors import SampleError
from mtpkdot.signals.files import nonfinite

if TYPE_CHECKING:
    import numpy as np


def process_sample(
    row: dict[str, Any], data_cfg: Any, sequence: bool, stats: PrepareStats | None = None
) -> dict[str, np.ndarray]:
    """Decode one manifest row into its arrays (one per modality, plus ``labels``; with a face crop,
    also the box record ``_box_<modality>``, which the store does not keep).

    Raises :class:`SampleError` (naming the file) for a sample that cannot be used. ``stats``: where the
    time per stage goes (default: nowhere).
    """
    from mtpkdot.data.affwild2 import clip_frames

    if sequence:
        out = sequence_sample(row, data_cfg, clip_frames(data_cfg))
    else:
        out = single_sample(row, data_cfg, stats or PrepareStats())
    for name, arr in out.items():
        bad = nonfinite(arr) if name != "labels" and arr.dtype.kind == "f" else None
        if bad:
            raise SampleError(
                f"{bad} values in modality {name!r} of {row.get(path_column(name), row['sample_id'])}"
            )
    return out
