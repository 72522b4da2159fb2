"""Teacher selection (Alg. 2): least task loss, ties to the joint teacher, per-sample variant."""

from __future__ import annotations

import pytest
import torch

from mtpkdot.distill import select_teacher


def test_least_loss_wins():
    idx = select_teacher(torch.tensor([0.5, 0.2, 0.4]), joint_index=2)
    assert idx.dim() == 0 and idx.dtype == torch.long and int(idx) == 1


def test_ties_go_to_joint():
    assert int(select_teacher(torch.tensor([0.2, 0.3, 0.2]), joint_index=2)) == 2
    assert int(select_teacher(torch.tensor([0.2, 0.2, 0.2]), joint_index=-1)) == 2
    # a tie between two modality teachers (not the joint): the first one
    assert int(select_teacher(torch.tensor([0.1, 0.1, 0.3]), joint_index=2)) == 0
    # tolerance: the joint wins when within tol of the minimum
    assert int(select_teacher(torch.tensor([0.19, 0.3, 0.2]), joint_index=2, tol=0.02)) == 2
    # joint first in the pool
    assert int(select_teacher(torch.tensor([0.2, 0.2]), joint_index=0)) == 0


def test_per_sample():
    losses = torch.tensor([[0.1, 0.5, 0.3, 0.2], [0.2, 0.4, 0.3, 0.1], [0.1, 0.6, 0.1, 0.3]])
    idx = select_teacher(losses, joint_index=2, per_sample=True)
    assert idx.tolist() == [2, 1, 2, 1]


def test_shape_and_index_errors():
    with pytest.raises(ValueError, match="1-D"):
        select_teacher(torch.zeros(2, 3), 0)
    with pytest.raises(ValueError, match="n_teachers x b"):
        select_teacher(torch.zeros(3), 0, per_sample=True)
    with pytest.raises(ValueError, match="out of range"):
        select_teacher(torch.zeros(3), 3)
