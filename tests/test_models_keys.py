"""Key-name and shape compatibility with torchvision's r3d_18 and resnet18, and loading their checkpoints.

The expected keys are the committed lists tests/golden/{r3d_18,resnet18}_keys.txt, written from
torchvision's architecture definition (torchvision is not a dependency); their parameter totals equal the
counts torchvision documents (33,371,472 and 11,689,512), checked below as an independent cross-check.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from mtpkdot.models import build_backbone, count_parameters

GOLDEN = Path(__file__).parent / "golden"
R3D_18_PARAMS = 33_371_472  # torchvision documentation, R3D_18_Weights.KINETICS400_V1 (400-class fc)
RESNET18_PARAMS = 11_689_512  # torchvision documentation, ResNet18_Weights.IMAGENET1K_V1 (1000-class fc)


def read_golden(name: str) -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in (GOLDEN / f"{name}_keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split()
        rows[key] = () if shape == "-" else tuple(int(s) for s in shape.split(","))
    return rows


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def fake_checkpoint(golden: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in golden.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def learnable_total(golden: dict[str, tuple[int, ...]]) -> int:
    return sum(
        math.prod(s) for k, s in golden.items() if not k.split(".")[-1].startswith(("running", "num_"))
    )


def test_golden_lists_match_the_documented_parameter_counts():
    assert learnable_total(read_golden("r3d_18")) == R3D_18_PARAMS
    assert learnable_total(read_golden("resnet18")) == RESNET18_PARAMS


def test_r3d_18_keys_and_shapes_match_torchvision_without_fc():
    golden = read_golden("r3d_18")
    expected = {k: s for k, s in golden.items() if not k.startswith("fc.")}
    model = build_backbone("r3d_18")
    assert shapes(model) == expected
    assert list(model.state_dict()) == list(expected)  # same order too
    assert count_parameters(model) == R3D_18_PARAMS - (512 * 400 + 400)


def test_resnet18_spec_keys_match_torchvision_from_layer1_on():
    golden = read_golden("resnet18")
    expected = {k: s for k, s in golden.items() if not k.startswith("fc.")}
    assert shapes(build_backbone("resnet18_spec", in_channels=3)) == expected
    one = shapes(build_backbone("resnet18_spec", in_channels=1))
    assert one.pop("conv1.weight") == (64, 1, 7, 7)
    assert one == {k: s for k, s in expected.items() if k != "conv1.weight"}
    assert count_parameters(build_backbone("resnet18_spec", in_channels=3)) == RESNET18_PARAMS - (
        512 * 1000 + 1000
    )


def test_projection_key_when_out_dim_differs():
    keys = shapes(build_backbone("r3d_18", out_dim=128))
    assert keys["proj.weight"] == (128, 512) and keys["proj.bias"] == (128,)
    assert not [k for k in keys if k.startswith("fc.")]


def test_r3d_18_loads_a_torchvision_checkpoint_dropping_fc(tmp_path, caplog):
    state = fake_checkpoint(read_golden("r3d_18"))
    path = tmp_path / "r3d_18.pth"
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="mtpkdot.models"):
        model = build_backbone("r3d_18", weights=path)
    assert "fc.weight" in caplog.text and "fc.bias" in caplog.text
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_r3d_18_weights_with_projection_and_wrapped_ddp_checkpoint(tmp_path):
    state = fake_checkpoint(read_golden("r3d_18"), seed=1)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = build_backbone("r3d_18", out_dim=64, weights=path)
    assert torch.equal(model.stem[0].weight, state["stem.0.weight"])
    assert torch.equal(model.layer4[1].conv2[1].running_var, state["layer4.1.conv2.1.running_var"])
    assert model.proj.weight.shape == (64, 512)


def test_fine_tuned_fc_of_another_shape_is_dropped(tmp_path, caplog):
    state = fake_checkpoint(read_golden("r3d_18"))
    state["fc.weight"], state["fc.bias"] = torch.randn(2, 512), torch.randn(2)
    torch.save(state, tmp_path / "two_class.pth")
    with caplog.at_level(logging.WARNING, logger="mtpkdot.models"):
        model = build_backbone("r3d_18", weights=tmp_path / "two_class.pth")
    assert "without fc.weight, fc.bias" in caplog.text  # dropped, and said so
    assert not [k for k in model.state_dict() if k.startswith("fc.")]
    for key, value in model.state_dict().items():  # everything else is the checkpoint's
        assert torch.equal(value, state[key]), key


def test_mismatching_checkpoint_names_the_keys(tmp_path):
    state = fake_checkpoint(read_golden("r3d_18"))
    state["layer2.0.conv1.0.weight"] = torch.randn(128, 64, 1, 3, 3)
    del state["layer3.1.conv2.1.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer3\.1\.conv2\.1\.bias.*layer2\.0\.conv1\.0\.weight"):
        build_backbone("r3d_18", weights=tmp_path / "bad.pth")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_backbone("r3d_18", weights=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        build_backbone("resnet18_spec", weights=tmp_path / "junk.pth")


def test_resnet18_spec_loads_imagenet_checkpoint(tmp_path, caplog):
    state = fake_checkpoint(read_golden("resnet18"))
    torch.save(state, tmp_path / "resnet18.pth")
    with caplog.at_level(logging.WARNING, logger="mtpkdot.models"):
        one = build_backbone("resnet18_spec", in_channels=1, weights=tmp_path / "resnet18.pth")
    assert "conv1.weight" in caplog.text  # 3-channel stem cannot serve 1 channel: ours is kept
    assert not torch.equal(one.conv1.weight, state["conv1.weight"][:, :1])
    assert torch.equal(one.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(one.bn1.weight, state["bn1.weight"])
    three = build_backbone("resnet18_spec", in_channels=3, weights=tmp_path / "resnet18.pth")
    assert torch.equal(three.conv1.weight, state["conv1.weight"])
