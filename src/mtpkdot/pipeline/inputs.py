"""From store arrays to model inputs and targets: dtype, layout, normalisation, per-clip targets.

A store array is ``N x item`` or, for sequence datasets (Affwild2), ``N x L x item``. Video items are
uint8 ``T x H x W x 3`` and become float ``3 x T x H x W`` normalised with the Kinetics-400 statistics
(what r3d_18's pretrained weights expect); other items (signals ``C x T``, spectrograms ``C x F x T``,
feature vectors ``D``) are standardised per channel with statistics of the fold's training samples.
A sequence of L items is encoded as ``N*L`` items and reshaped back to ``N x L x d``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


class Normalizer:
    """Maps a batch of raw store items to float model input (see module docstring)."""

    def __init__(self, kind: str, nd: int, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        self.kind, self.nd, self.mean, self.std = kind, nd, mean, std

    @property
    def is_video(self) -> bool:
        return self.nd == 4

    @classmethod
    def fit(cls, array: Any, indices: np.ndarray, kind: str, nd: int, chunk: int = 512) -> Normalizer:
        """Per-channel mean and std (unbiased) over every given sample, read ``chunk`` samples at a time.

        All training samples count, not a prefix (which, with indices sorted by subject, would describe
        the first subjects only); NaN is read as 0, as :meth:`__call__` does.
        """
        if nd == 4:
            return cls(kind, nd)
        idx = np.sort(np.asarray(indices))
        total = total_sq = None
        count = 0
        for start in range(0, len(idx), chunk):
            x = torch.from_numpy(np.asarray(array[idx[start : start + chunk]], dtype=np.float64))
            x = torch.nan_to_num(x.reshape(-1, *x.shape[-nd:]))  # drop a sequence axis
            chan = x.transpose(0, 1).reshape(x.shape[1], -1) if nd >= 2 else x.reshape(-1, x.shape[-1]).T
            s, sq = chan.sum(dim=1), chan.square().sum(dim=1)
            total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
            count += chan.shape[1]
        if total is None:
            raise ValueError("Normalizer.fit: no training samples to take statistics from")
        mean = total / count
        var = (total_sq - count * mean.square()).clamp_min(0) / max(count - 1, 1)
        std = var.sqrt().clamp_min(1e-6)
        return cls(kind, nd, mean.float(), std.float())

    def __call__(self, raw: np.ndarray | torch.Tensor, device: torch.device) -> tuple[torch.Tensor, tuple]:
        """Return ``(x, lead)``: model input of shape ``(prod(lead),) + item`` and the leading shape."""
        if not isinstance(raw, torch.Tensor):
            arr = np.asarray(raw)
            raw = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        x = raw
        lead = tuple(x.shape[: x.dim() - self.nd])
        x = x.reshape(-1, *x.shape[x.dim() - self.nd :]).to(device)
        if self.is_video:
            x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)  # B x 3 x T x H x W
            mean = torch.tensor(KINETICS_MEAN, device=device).view(1, 3, 1, 1, 1)
            std = torch.tensor(KINETICS_STD, device=device).view(1, 3, 1, 1, 1)
            return (x - mean) / std, lead
        x = torch.nan_to_num(x.float())
        if self.mean is not None:
            shape = (1, -1) + (1,) * (self.nd - 1)
            x = (x - self.mean.to(device).view(shape)) / self.std.to(device).view(shape)
        return x, lead


def targets(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training targets and validity mask from store labels.

    Classification labels (``N`` ints) pass through with no mask. Regression labels are per frame,
    ``N [x L] x F x 2`` with NaN where unannotated; a clip has one prediction, so its training target is
    the mean of its valid frames and it is masked out when it has none. Evaluation uses the frames
    themselves (:func:`frame_targets`).
    """
    if labels.dtype.kind in "iu" or labels.ndim == 1:
        return torch.as_tensor(np.asarray(labels), dtype=torch.long), None
    lab = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    valid = ~torch.isnan(lab)
    count = valid.sum(dim=-2)
    mean = torch.where(valid, lab, torch.zeros_like(lab)).sum(dim=-2) / count.clamp_min(1)
    mask = (count > 0).all(dim=-1)
    return mean, mask


def frame_targets(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Evaluation targets: every valid frame (regression) or the class (classification)."""
    if labels.dtype.kind in "iu" or labels.ndim == 1:
        return torch.as_tensor(np.asarray(labels), dtype=torch.long), None
    lab = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    mask = ~torch.isnan(lab).any(dim=-1)
    return torch.nan_to_num(lab), mask


def expand_to_frames(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Repeat a per-clip prediction over the clip's frames (``... x 2`` -> ``... x F x 2``)."""
    if y.dtype == torch.long or pred.dim() == y.dim():
        return pred
    return pred.unsqueeze(-2).expand(*pred.shape[:-1], y.shape[-2], pred.shape[-1])
