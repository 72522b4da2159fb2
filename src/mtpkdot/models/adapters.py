"""Modality adapters for self-distillation (paper Sec. III-A, Alg. 1, Eq. 1).

An adapter A_i maps a modality's backbone feature F_i into the space of the joint representation
F_joint. The paper calls it an encoder-decoder; unlike the released code (two stacked linear layers, i.e.
one rank-256 affine map) it has a nonlinearity between encoder and decoder.
"""

from __future__ import annotations

from torch import Tensor, nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}") from None


class Adapter(nn.Module):
    """Encoder-decoder MLP ``in_dim -> hidden -> out_dim`` (Linear-ReLU-Linear, 512 -> 256 -> 512 by default)."""

    def __init__(self, in_dim: int = 512, out_dim: int = 512, hidden: int = 256, act: str = "relu") -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), activation(act))
        self.decoder = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))
