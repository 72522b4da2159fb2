"""Fusion modules of the teacher and student (paper Fig. 3, Table I).

Each fusion is called as ``fusion([f_1, ..., f_M])`` with ``f_m`` of shape ``B x d_m`` or ``B x L x d_m``
(L clips per sample, the same L for every modality) and returns ``(outputs, joint)``: outputs
``B [x L] x num_outputs`` and joint ``B [x L] x joint_dim``, where joint (F_joint in the paper) is the
representation right before the final linear head. Every operation works within one sample, so in eval
mode the output for a sample does not depend on the other samples of the batch.

Each fusion declares ``takes_seq_len``: whether it is built for a fixed sequence length (``seq_len=``,
which the pipeline fills from the data's sequence length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtpkdot.models._call import call_checked
from mtpkdot.registry import FUSIONS


def _as_sequences(feats: Sequence[Tensor], in_dims: Sequence[int], name: str) -> tuple[list[Tensor], bool]:
    """Check the inputs against ``in_dims`` and return them as ``B x L x d`` plus whether L was added."""
    if len(feats) != len(in_dims):
        raise ValueError(
            f"fusion {name!r} was built for {len(in_dims)} modalities but got {len(feats)} inputs"
        )
    ranks = {f.dim() for f in feats}
    if len(ranks) != 1 or ranks.pop() not in (2, 3):
        shapes = [tuple(f.shape) for f in feats]
        raise ValueError(f"fusion {name!r}: inputs must all be B x d or all B x L x d, got shapes {shapes}")
    for i, (f, d) in enumerate(zip(feats, in_dims, strict=True)):
        if f.shape[-1] != d:
            raise ValueError(f"fusion {name!r}: input {i} has feature size {f.shape[-1]}, expected {d}")
    if len({tuple(f.shape[:-1]) for f in feats}) != 1:
        shapes = [tuple(f.shape) for f in feats]
        raise ValueError(f"fusion {name!r}: inputs differ in their leading axes: {shapes}")
    added = feats[0].dim() == 2
    return [f.unsqueeze(1) if added else f for f in feats], added


def _check_modalities(in_dims: Sequence[int], name: str, minimum: int) -> list[int]:
    dims = [int(d) for d in in_dims]
    if len(dims) < minimum or any(d < 1 for d in dims):
        raise ValueError(f"fusion {name!r} needs at least {minimum} positive input sizes, got {dims}")
    return dims


@FUSIONS.register("concat")
class ConcatFusion(nn.Module):
    """Feature concatenation + MLP (paper Fig. 3a, Biovid A teacher).

    Each modality is projected to ``proj_dim`` (Linear-ReLU), the projections are concatenated and an
    MLP layer (Linear-ReLU-Dropout) gives the joint representation (``hidden`` = ``joint_dim``), which a
    linear head maps to the outputs.
    """

    takes_seq_len: ClassVar[bool] = False

    def __init__(
        self,
        in_dims: Sequence[int],
        num_outputs: int,
        proj_dim: int = 256,
        hidden: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dims = _check_modalities(in_dims, "concat", 1)
        self.joint_dim = hidden
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(d, proj_dim), nn.ReLU()) for d in self.in_dims)
        self.mlp = nn.Sequential(
            nn.Linear(proj_dim * len(self.in_dims), hidden), nn.ReLU(), nn.Dropout(dropout)
        )
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        _as_sequences(feats, self.in_dims, "concat")  # validation only: Linear keeps any leading axes
        joint = self.mlp(torch.cat([p(f) for p, f in zip(self.proj, feats, strict=True)], dim=-1))
        return self.head(joint), joint


class _JointCrossAttention(nn.Module):
    """Attention for one modality m against the joint representation (Praveen et al., Eqs. of Sec. III).

    In the paper's column layout (X_m: d_m x L, J: d x L):
    C_m = tanh(X_m^T W_jm J / sqrt(d)) (L x L), H_m = ReLU(W_m X_m + W_cm C_m^T) (k x L),
    X_att,m = W_hm H_m + X_m. Here rows are clips (X is L x d_m), so each product is transposed.
    """

    def __init__(self, d_m: int, d: int, seq_len: int, k: int) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(d)
        self.w_j = nn.Parameter(torch.empty(d_m, d))
        nn.init.xavier_uniform_(self.w_j)
        self.w_x = nn.Linear(d_m, k, bias=False)
        self.w_c = nn.Linear(seq_len, k, bias=False)
        self.w_h = nn.Linear(k, d_m, bias=False)

    def forward(self, x: Tensor, joint: Tensor) -> Tensor:
        corr = torch.tanh(
            x @ self.w_j @ joint.transpose(1, 2) * self.scale
        )  # B x L x L: clip l vs joint clip j
        h = torch.relu(self.w_x(x) + self.w_c(corr))
        return self.w_h(h) + x


@FUSIONS.register("jca")
class JCAFusion(nn.Module):
    """Joint cross-attention fusion (paper Fig. 3b, Affwild2 teacher; Praveen et al., CVPRw 2022).

    The joint representation J concatenates all modalities along the feature axis for the L clips of a
    sample; each modality attends to J (cross-correlation, attention map, attended features added to
    its input). The attended features are concatenated and an MLP layer gives F_joint per clip, which a
    linear head maps to the outputs (valence/arousal or class logits) per clip. ``seq_len`` is the L the
    module is built for (the attention weight W_c is L-wide); plain ``B x d`` inputs mean L = 1.
    """

    takes_seq_len: ClassVar[bool] = True

    def __init__(
        self,
        in_dims: Sequence[int],
        num_outputs: int,
        seq_len: int = 1,
        k: int = 32,
        hidden: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dims = _check_modalities(in_dims, "jca", 2)
        if seq_len < 1:
            raise ValueError(f"fusion 'jca': seq_len must be >= 1, got {seq_len}")
        self.seq_len = seq_len
        self.joint_dim = hidden
        total = sum(self.in_dims)
        self.attend = nn.ModuleList(_JointCrossAttention(d, total, seq_len, k) for d in self.in_dims)
        self.mlp = nn.Sequential(nn.Linear(total, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        seqs, added = _as_sequences(feats, self.in_dims, "jca")
        if seqs[0].shape[1] != self.seq_len:
            raise ValueError(
                f"fusion 'jca' was built for sequences of L={self.seq_len} clips but got L={seqs[0].shape[1]}; "
                f"set fusion_kwargs.seq_len to the sequence length"
            )
        joint_in = torch.cat(seqs, dim=-1)
        attended = [att(x, joint_in) for att, x in zip(self.attend, seqs, strict=True)]
        joint = self.mlp(torch.cat(attended, dim=-1))
        out = self.head(joint)
        if added:
            return out.squeeze(1), joint.squeeze(1)
        return out, joint


class _CrossAttentionBlock(nn.Module):
    """Post-norm transformer block whose queries come from one modality and keys/values from others."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        attended, _ = self.attn(query, context, context, need_weights=False)
        h = self.norm1(query + self.drop(attended))
        return self.norm2(h + self.drop(self.ff(h)))


@FUSIONS.register("mmt")
class MMTFusion(nn.Module):
    """Multimodal transformer with cross-attention and a learned gate (paper Fig. 3c, Biovid B; Waligora et al.).

    Each modality's tokens (1 per sample, or its L clips) go through their own transformer encoder;
    each modality then cross-attends (queries) to the tokens of the other modalities (keys and values);
    a learned gate weights the cross-attended features and their sum is F_joint, mapped to the outputs
    by a linear head. For two modalities the gate is the paper's ``z = g ca_1 + (1 - g) ca_2`` with
    ``g = sigmoid(w^T [ca_1; ca_2] + b)``; for M modalities it is a softmax over M logits of which the
    last is fixed at 0 (which is that sigmoid when M = 2). All attention runs over the tokens of ONE
    sample (``batch_first=True``): the released code attended across the batch by mistake.

    Attention is blind to the order of the L clips of a sequence; ``positional=True`` adds the fixed
    sinusoidal encoding of Vaswani et al. to each modality's tokens before its encoder, so the model can
    use the order (no parameters: checkpoints stay compatible). Off by default, as released.
    """

    takes_seq_len: ClassVar[bool] = False

    def __init__(
        self,
        in_dims: Sequence[int],
        num_outputs: int,
        d_model: int = 512,
        heads: int = 2,
        ff_dim: int = 512,
        layers: int = 1,
        dropout: float = 0.1,
        positional: bool = False,
    ) -> None:
        super().__init__()
        self.positional = bool(positional)
        self.in_dims = _check_modalities(in_dims, "mmt", 2)
        self.joint_dim = d_model
        self.inp = nn.ModuleList(
            nn.Identity() if d == d_model else nn.Linear(d, d_model) for d in self.in_dims
        )
        self.encoders = nn.ModuleList(
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, batch_first=True),
                layers,
                enable_nested_tensor=False,
            )
            for _ in self.in_dims
        )
        self.cross = nn.ModuleList(
            _CrossAttentionBlock(d_model, heads, ff_dim, dropout) for _ in self.in_dims
        )
        self.gate = nn.Linear(d_model * len(self.in_dims), len(self.in_dims) - 1)
        self.head = nn.Linear(d_model, num_outputs)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        seqs, added = _as_sequences(feats, self.in_dims, "mmt")
        tokens = [p(x) for p, x in zip(self.inp, seqs, strict=True)]
        if self.positional and tokens[0].shape[1] > 1:
            pe = sinusoidal_encoding(tokens[0].shape[1], self.joint_dim, tokens[0].device, tokens[0].dtype)
            tokens = [t + pe for t in tokens]
        enc = [e(t) for e, t in zip(self.encoders, tokens, strict=True)]
        crossed = []
        for m, block in enumerate(self.cross):
            context = torch.cat([t for j, t in enumerate(enc) if j != m], dim=1)
            crossed.append(block(enc[m], context))
        logits = self.gate(torch.cat(crossed, dim=-1))
        logits = torch.cat([logits, torch.zeros_like(logits[..., :1])], dim=-1)
        weights = torch.softmax(logits, dim=-1)  # B x L x M
        joint = (torch.stack(crossed, dim=-1) * weights.unsqueeze(-2)).sum(dim=-1)
        out = self.head(joint)
        if added:
            return out.squeeze(1), joint.squeeze(1)
        return out, joint


def sinusoidal_encoding(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``length x dim`` fixed positional encoding: sin at even, cos at odd channels, wavelengths
    from 2*pi to 10000*2*pi (Vaswani et al., 2017)."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


def takes_seq_len(name: str) -> bool:
    """Whether fusion ``name`` is built for a fixed sequence length (``seq_len=``)."""
    cls = FUSIONS.get(name)
    declared = getattr(cls, "takes_seq_len", None)
    if not isinstance(declared, bool):
        raise TypeError(
            f"fusion {name!r} does not declare takes_seq_len (a class attribute: True when its "
            "constructor takes seq_len=)"
        )
    return declared


def build_fusion(name: str, in_dims: Sequence[int], num_outputs: int, **kwargs: Any) -> nn.Module:
    """Build the registered fusion ``name`` for modalities of sizes ``in_dims``; the result has ``joint_dim``."""
    return call_checked(f"fusion {name!r}", FUSIONS.get(name), list(in_dims), num_outputs, **kwargs)
