"""Store arrays -> model inputs and targets (layout, normalisation, per-clip targets, frame expansion)."""

from __future__ import annotations

import numpy as np
import torch

from mtpkdot.pipeline.inputs import Normalizer, expand_to_frames, frame_targets, targets


def test_video_items_become_channels_first_and_sequences_flatten():
    raw = np.zeros((2, 3, 4, 8, 8, 3), dtype=np.uint8)  # N x L x T x H x W x 3
    raw[..., 0] = 255
    x, lead = Normalizer("video", 4)(raw, torch.device("cpu"))
    assert lead == (2, 3) and x.shape == (6, 3, 4, 8, 8)
    assert x[:, 0].min() > 0 > x[:, 1].max()  # red channel bright, green dark after normalisation


def test_signal_statistics_come_from_the_given_training_samples():
    arr = np.stack([np.full((2, 5), i, dtype=np.float32) for i in range(10)])  # N x C x T
    arr[:, 1] *= 10
    norm = Normalizer.fit(arr, np.arange(4), "eda", 2)
    assert torch.allclose(norm.mean, torch.tensor([1.5, 15.0]))
    x, _ = norm(arr[:4], torch.device("cpu"))
    assert abs(float(x.mean())) < 1e-6


def test_signal_statistics_use_every_training_sample_in_any_chunking():
    # subject-ordered data whose level drifts: a prefix of the indices would describe the first ones only
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(700, 3, 6, 4)) + np.arange(700)[:, None, None, None] / 100).astype(np.float32)
    arr[5, 1, 2, 3] = np.nan  # read as 0, as the normaliser does at call time
    train = rng.permutation(np.arange(0, 700, 2))  # order of the indices does not matter
    clean = np.nan_to_num(arr[np.sort(train)]).astype(np.float64)
    expected_mean = clean.transpose(1, 0, 2, 3).reshape(3, -1).mean(1)
    expected_std = clean.transpose(1, 0, 2, 3).reshape(3, -1).std(1, ddof=1)
    for chunk in (7, 64, 1000):
        norm = Normalizer.fit(arr, train, "emg", 3, chunk=chunk)
        np.testing.assert_allclose(norm.mean.numpy(), expected_mean, rtol=1e-5)
        np.testing.assert_allclose(norm.std.numpy(), expected_std, rtol=1e-5)


def test_regression_targets_average_valid_frames_and_mask_empty_clips():
    lab = np.full((1, 2, 3, 2), np.nan, dtype=np.float32)  # N x L x F x 2
    lab[0, 0, 0] = [0.2, 0.4]
    lab[0, 0, 2] = [0.4, 0.0]
    y, mask = targets(lab)
    assert torch.allclose(y[0, 0], torch.tensor([0.3, 0.2]))
    assert mask.tolist() == [[True, False]]
    yf, mf = frame_targets(lab)
    assert mf.tolist() == [[[True, False, True], [False, False, False]]]
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert expand_to_frames(pred, yf).shape == (1, 2, 3, 2)
    assert torch.equal(expand_to_frames(pred, yf)[0, 1, 2], torch.tensor([3.0, 4.0]))


def test_classification_targets_pass_through():
    y, mask = targets(np.array([0, 1, 1]))
    assert y.dtype == torch.long and mask is None
    assert expand_to_frames(torch.zeros(3, 2), y).shape == (3, 2)
