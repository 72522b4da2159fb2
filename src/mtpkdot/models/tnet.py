"""T-Net: hallucinates the features of a missing modality (paper Sec. IV-B "Student", Table VII).

Trained in the teacher phase to map prevalent features to privileged features, then frozen inside the
student. The reverse direction (privileged -> prevalent, for the physiological student of Table VII) is
the same module with the input and output sizes swapped by configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mtpkdot.models.adapters import activation


class TNet(nn.Module):
    """MLP ``in_dim -> hidden... -> out_dim`` with a nonlinearity after every hidden layer."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256,),
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), activation(act), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
