"""Fusion modules: shapes, batch independence in eval mode, the MMT gate, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtpkdot.models import build_fusion, takes_seq_len
from mtpkdot.registry import FUSIONS

NAMES = ["concat", "jca", "mmt"]


def small(name: str, in_dims: list[int], num_outputs: int = 3, seq_len: int = 1) -> nn.Module:
    kwargs = {"seq_len": seq_len} if name == "jca" else {}
    if name == "mmt":
        kwargs = {"d_model": 32, "heads": 2, "ff_dim": 64}
    if name in ("concat", "jca"):
        kwargs["hidden"] = 32
    torch.manual_seed(0)
    return build_fusion(name, in_dims, num_outputs, **kwargs)


def test_every_registered_fusion_is_tested():
    assert FUSIONS.names() == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_dims", [[16, 8], [16, 8, 4]])
def test_shapes_vectors(name, in_dims):
    fusion = small(name, in_dims)
    out, joint = fusion([torch.randn(5, d) for d in in_dims])
    assert out.shape == (5, 3) and joint.shape == (5, fusion.joint_dim) == (5, 32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_dims", [[16, 8], [16, 8, 4]])
def test_shapes_sequences(name, in_dims):
    fusion = small(name, in_dims, num_outputs=2, seq_len=4)
    out, joint = fusion([torch.randn(5, 4, d) for d in in_dims])
    assert out.shape == (5, 4, 2) and joint.shape == (5, 4, fusion.joint_dim)


def test_default_sizes_give_a_512_joint():
    for name in NAMES:
        fusion = build_fusion(name, [512, 512], 2)
        out, joint = fusion([torch.randn(2, 512), torch.randn(2, 512)])
        assert fusion.joint_dim == 512 and joint.shape == (2, 512) and out.shape == (2, 2)


def first_sample_changes(module, make_inputs) -> float:
    """Largest change of sample 0's outputs when the rest of the batch is replaced (and when it is alone)."""
    torch.manual_seed(1)
    feats = make_inputs(6)
    other = make_inputs(6)
    mixed = [torch.cat([f[:1], o[1:]]) for f, o in zip(feats, other, strict=True)]
    with torch.no_grad():
        ref_out, ref_joint = module(feats)
        worst = 0.0
        for batch in (mixed, [f[:1] for f in feats], [f[:3] for f in feats]):
            out, joint = module(batch)
            worst = max(
                worst, (out[0] - ref_out[0]).abs().max().item(), (joint[0] - ref_joint[0]).abs().max().item()
            )
    return worst


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seq", [None, 3])
def test_batch_independence_in_eval_mode(name, seq):
    in_dims = [16, 8, 4]
    fusion = small(name, in_dims, seq_len=seq or 1).eval()

    def make(b):
        return [torch.randn(b, d) if seq is None else torch.randn(b, seq, d) for d in in_dims]

    assert first_sample_changes(fusion, make) < 1e-5


def test_the_batch_independence_check_can_fail():
    # the released code's bug: nn.MultiheadAttention without batch_first on B x 1 x d attends across the batch
    class CrossBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)

        def forward(self, feats):
            x = feats[0].unsqueeze(1)
            out = self.attn(x, x, x)[0].squeeze(1)
            return out, out

    assert first_sample_changes(CrossBatch().eval(), lambda b: [torch.randn(b, 8)]) > 1e-3


def test_mmt_gate_is_the_papers_sigmoid_for_two_modalities():
    fusion = small("mmt", [16, 8]).eval()
    feats = [torch.randn(4, 16), torch.randn(4, 8)]
    crossed = []
    hooks = [blk.register_forward_hook(lambda m, i, o: crossed.append(o)) for blk in fusion.cross]
    with torch.no_grad():
        out, joint = fusion(feats)
    for h in hooks:
        h.remove()
    ca_1, ca_2 = (c.squeeze(1) for c in crossed)
    g = torch.sigmoid(fusion.gate(torch.cat([ca_1, ca_2], dim=-1)))
    torch.testing.assert_close(joint, g * ca_1 + (1 - g) * ca_2)
    torch.testing.assert_close(out, fusion.head(joint))


def test_mmt_attention_uses_the_other_modality():
    # each cross-attention block takes keys/values from the other modality: changing modality 2 only
    # must change the cross-attended features of modality 1
    fusion = small("mmt", [16, 8]).eval()
    a, b = torch.randn(4, 3, 16), torch.randn(4, 3, 8)
    with torch.no_grad():
        j1 = fusion([a, b])[1]
        j2 = fusion([a, torch.randn(4, 3, 8)])[1]
    assert (j1 - j2).abs().max() > 1e-4


def test_jca_attention_is_added_to_the_inputs():
    # with W_h = 0 the attended features equal the inputs (X_att = W_h H + X)
    fusion = small("jca", [16, 8], seq_len=2).eval()
    for att in fusion.attend:
        nn.init.zeros_(att.w_h.weight)
    x = [torch.randn(3, 2, 16), torch.randn(3, 2, 8)]
    with torch.no_grad():
        _, joint = fusion(x)
        expected = fusion.mlp(torch.cat(x, dim=-1))
    torch.testing.assert_close(joint, expected)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    in_dims = [16, 8]
    fusion = small(name, in_dims, seq_len=2).train()
    out, joint = fusion([torch.randn(4, 2, d) for d in in_dims])
    (out.square().mean() + joint.square().mean()).backward()
    no_grad = [n for n, p in fusion.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, no_grad


def test_input_errors_are_clear():
    fusion = small("jca", [16, 8], seq_len=1)
    with pytest.raises(ValueError, match="L=1 clips but got L=4.*seq_len"):
        fusion([torch.randn(2, 4, 16), torch.randn(2, 4, 8)])
    with pytest.raises(ValueError, match="2 modalities but got 1"):
        fusion([torch.randn(2, 16)])
    with pytest.raises(ValueError, match="input 1 has feature size 9, expected 8"):
        fusion([torch.randn(2, 16), torch.randn(2, 9)])
    with pytest.raises(ValueError, match="leading axes"):
        fusion([torch.randn(2, 16), torch.randn(3, 8)])
    with pytest.raises(ValueError, match="all be B x d or all B x L x d"):
        fusion([torch.randn(2, 16), torch.randn(2, 1, 8)])
    with pytest.raises(ValueError, match="at least 2"):
        build_fusion("mmt", [512], 2)
    with pytest.raises(TypeError, match="fusion 'concat'.*heads.*it takes"):
        build_fusion("concat", [512, 512], 2, heads=4)
    with pytest.raises(KeyError, match="unknown fusion"):
        build_fusion("tfn", [512, 512], 2)


def test_registered_fusions_cite_the_paper():
    for name, cls in FUSIONS.items():
        assert "paper" in (cls.__doc__ or "").strip().splitlines()[0], name


def test_mmt_positional_encoding_makes_clip_order_matter():
    torch.manual_seed(0)
    x = [torch.randn(3, 5, 8), torch.randn(3, 5, 6)]
    perm = torch.tensor([4, 2, 0, 3, 1])
    plain = build_fusion("mmt", [8, 6], 2, d_model=16, ff_dim=16).eval()
    pos = build_fusion("mmt", [8, 6], 2, d_model=16, ff_dim=16, positional=True).eval()
    pos.load_state_dict(plain.state_dict())  # no parameters added: same checkpoint keys
    with torch.no_grad():
        # without it, permuting the clips only permutes the outputs (attention ignores order)
        out, _ = plain(x)
        out_p, _ = plain([t[:, perm] for t in x])
        torch.testing.assert_close(out_p, out[:, perm])
        # with it, the order changes the outputs; a single clip is unaffected
        out, _ = pos(x)
        out_p, _ = pos([t[:, perm] for t in x])
        assert (out_p - out[:, perm]).abs().max() > 1e-3
        single = [t[:, :1] for t in x]
        torch.testing.assert_close(pos(single)[0], plain(single)[0])


def test_fusions_declare_whether_they_take_a_sequence_length():
    assert {n for n in FUSIONS.names() if takes_seq_len(n)} == {"jca"}
    FUSIONS.register("undeclared")(torch.nn.Identity)
    try:
        with pytest.raises(TypeError, match="undeclared.*takes_seq_len"):
            takes_seq_len("undeclared")
    finally:
        FUSIONS._items.pop("undeclared")
