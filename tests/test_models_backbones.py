"""Backbones: output shapes, a training step on the CPU at demo size, arguments and errors."""

from __future__ import annotations

import pytest
import torch

from mtpkdot.models import accepts_weights, build_backbone, count_parameters, input_kwargs, input_ndim
from mtpkdot.registry import BACKBONES

# name -> (kwargs, demo input shape)
DEMO = {
    "r3d_18": ({}, (2, 3, 4, 32, 32)),
    "tiny3d": ({}, (2, 3, 8, 64, 64)),
    "resnet18_spec": ({"in_channels": 1}, (2, 1, 65, 127)),
    "cnn1d": ({"in_channels": 2}, (2, 2, 2816)),
    "mlp": ({"in_dim": 40}, (2, 40)),
}


def test_every_registered_backbone_has_a_demo_case():
    assert sorted(DEMO) == BACKBONES.names()


@pytest.mark.parametrize("name", sorted(DEMO))
def test_forward_backward_step_at_demo_size(name):
    torch.manual_seed(0)
    kwargs, shape = DEMO[name]
    model = build_backbone(name, **kwargs)
    assert model.out_dim == 512 and model.input_ndim == input_ndim(name) == len(shape) - 1
    head = torch.nn.Linear(512, 2)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    x, y = torch.randn(shape), torch.tensor([0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    feats = model(x)
    assert feats.shape == (2, 512) and torch.isfinite(feats).all()
    loss = torch.nn.functional.cross_entropy(head(feats), y)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", sorted(DEMO))
def test_out_dim_projection(name):
    kwargs, shape = DEMO[name]
    model = build_backbone(name, out_dim=96, **kwargs).eval()
    assert model.out_dim == 96
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (2, 96)


def test_video_backbones_accept_other_clip_sizes():
    with torch.no_grad():
        assert build_backbone("tiny3d").eval()(torch.randn(1, 3, 4, 32, 48)).shape == (1, 512)
        # the audio spectrogram size of the paper
        assert build_backbone("resnet18_spec").eval()(torch.randn(1, 1, 64, 107)).shape == (1, 512)


@pytest.mark.parametrize("length", [1, 3, 17, 700])
def test_cnn1d_takes_any_length(length):
    model = build_backbone("cnn1d", in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, length)).shape == (2, 512)


def test_r3d_18_temporal_and_spatial_downsampling():
    # torchvision's r3d_18 keeps T in stem and layer1, then halves it (rounding up) in layers 2-4,
    # and halves space in the stem and layers 2-4: T=10 goes 10 -> 5 -> 3 -> 2
    model = build_backbone("r3d_18").eval()
    sizes = {}
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, n=name: sizes.__setitem__(n, tuple(o.shape))
        )
    with torch.no_grad():
        model(torch.randn(1, 3, 10, 32, 32))
    assert sizes == {
        "stem": (1, 64, 10, 16, 16),
        "layer1": (1, 64, 10, 16, 16),
        "layer2": (1, 128, 5, 8, 8),
        "layer3": (1, 256, 3, 4, 4),
        "layer4": (1, 512, 2, 2, 2),
    }


def test_sizes_of_small_backbones():
    assert 100_000 < count_parameters(build_backbone("tiny3d")) < 1_000_000
    assert 600_000 < count_parameters(build_backbone("cnn1d")) < 1_000_000


def test_tiny3d_group_norm_is_batch_independent_in_train_mode():
    torch.manual_seed(0)
    model = build_backbone("tiny3d", norm="group").train()
    x = torch.randn(3, 3, 4, 32, 32)
    alone = model(x[:1])
    together = model(x)[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-4)


def test_errors_are_clear():
    with pytest.raises(KeyError, match="unknown backbone 'r3d_50'.*r3d_18"):
        build_backbone("r3d_50")
    with pytest.raises(TypeError, match="backbone 'tiny3d'.*depth.*it takes"):
        build_backbone("tiny3d", depth=3)
    with pytest.raises(ValueError, match="in_dim"):
        build_backbone("mlp")
    with pytest.raises(ValueError, match="norm"):
        build_backbone("cnn1d", norm="layer")


def test_registered_backbones_are_documented():
    for name, factory in BACKBONES.items():
        doc = (factory.__doc__ or "").strip()
        assert doc, f"backbone {name} has no docstring"
        assert "paper" in doc.splitlines()[0], (
            f"backbone {name}: the first docstring line cites no paper section"
        )


def test_backbones_declare_their_inputs():
    # the arguments read from a stored sample's shape; a leading sequence axis is ignored, given wins
    assert input_kwargs("cnn1d", (2, 2816), {}) == {"in_channels": 2}
    assert input_kwargs("cnn1d", (5, 2, 2816), {"pool": 2}) == {"in_channels": 2, "pool": 2}
    assert input_kwargs("resnet18_spec", (1, 65, 127), {"in_channels": 3}) == {"in_channels": 3}
    assert input_kwargs("mlp", (4, 40), {}) == {"in_dim": 40}
    assert input_kwargs("tiny3d", (8, 64, 64, 3), {"width": 4}) == {"width": 4}  # channels are fixed at 3
    assert {n for n in BACKBONES.names() if accepts_weights(n)} == {"r3d_18", "resnet18_spec"}


def test_a_backbone_registered_without_declarations_is_refused():
    BACKBONES.register("undeclared")(lambda out_dim=512: torch.nn.Linear(3, out_dim))
    try:
        with pytest.raises(TypeError, match="undeclared.*register_backbone"):
            input_ndim("undeclared")
    finally:
        BACKBONES._items.pop("undeclared")


def test_a_type_error_inside_a_backbone_is_not_taken_for_a_wrong_argument():
    from mtpkdot.models import register_backbone

    @register_backbone("broken", input_ndim=1)
    def broken(out_dim: int = 512) -> torch.nn.Module:
        """Raises inside (paper: none)."""
        return torch.nn.Linear("3", out_dim)  # type: ignore[arg-type]

    try:
        with pytest.raises(TypeError) as info:
            build_backbone("broken")
        assert "it takes" not in str(info.value)
    finally:
        BACKBONES._items.pop("broken")
