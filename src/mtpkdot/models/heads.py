"""Linear heads: the classifier/regressor on top of a feature (paper Alg. 1: one head per adapted teacher)."""

from __future__ import annotations

from torch import Tensor, nn


class LinearHead(nn.Module):
    """A single linear layer ``in_dim -> num_outputs``, applied to the last axis (any leading axes)."""

    def __init__(self, in_dim: int, num_outputs: int) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_outputs = num_outputs
        self.fc = nn.Linear(in_dim, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)
