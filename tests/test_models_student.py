"""Adapter, T-Net, linear head and the Student (privileged data never enters, frozen T-Nets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtpkdot.models import Adapter, LinearHead, Student, TNet, build_backbone, build_fusion


def test_adapter_is_a_nonlinear_encoder_decoder():
    adapter = Adapter()
    assert adapter(torch.randn(3, 512)).shape == (3, 512)
    assert sum(p.numel() for p in adapter.parameters()) == 512 * 256 + 256 + 256 * 512 + 512
    # not an affine map (the released adapter was): A(x) + A(-x) != 2 A(0) in general
    x = torch.randn(4, 512)
    with torch.no_grad():
        assert (adapter(x) + adapter(-x) - 2 * adapter(torch.zeros(1, 512))).abs().max() > 1e-3
    assert Adapter(64, 32, hidden=16, act="gelu")(torch.randn(2, 5, 64)).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="activation"):
        Adapter(act="tanh")


def test_tnet_and_head_shapes():
    assert TNet(512, 128)(torch.randn(3, 512)).shape == (3, 128)
    assert TNet(128, 512, hidden=[64, 32])(torch.randn(2, 7, 128)).shape == (2, 7, 512)
    linear = TNet(8, 4, hidden=[])
    assert len([m for m in linear.modules() if isinstance(m, nn.Linear)]) == 1
    assert LinearHead(512, 2)(torch.randn(3, 4, 512)).shape == (3, 4, 2)


class Recorder(nn.Module):
    """A fusion stand-in that records what it receives."""

    def __init__(self, in_dims):
        super().__init__()
        self.in_dims = in_dims
        self.lin = nn.Linear(sum(in_dims), 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, feats):
        self.seen = list(feats)
        joint = torch.cat(feats, dim=-1)
        return self.lin(joint), joint


def make_student(backbones=None, dropout=0.0):
    torch.manual_seed(0)
    tnets = {"eda": TNet(16, 6, dropout=dropout), "emg": TNet(16, 5, dropout=dropout)}
    fusion = Recorder([6, 16, 5])
    return Student(fusion, tnets, order=["eda", "video", "emg"], prevalent=["video"], backbones=backbones)


def test_student_orders_features_and_hallucinates_privileged():
    student = make_student()
    video = torch.randn(4, 16)
    out, joint = student({"video": video})
    assert out.shape == (4, 2) and joint.shape == (4, 27)
    eda, vid, emg = student.fusion.seen
    torch.testing.assert_close(vid, video)
    torch.testing.assert_close(eda, student.tnets["eda"](video))
    torch.testing.assert_close(emg, student.tnets["emg"](video))


def test_student_rejects_privileged_and_unknown_inputs():
    student = make_student()
    with pytest.raises(ValueError, match=r"privileged modality \['eda'\].*only the prevalent"):
        student({"video": torch.randn(2, 16), "eda": torch.randn(2, 6)})
    with pytest.raises(ValueError, match="unknown modality"):
        student({"video": torch.randn(2, 16), "audio": torch.randn(2, 6)})
    with pytest.raises(ValueError, match="missing"):
        student({})


def test_student_configuration_errors():
    fusion = build_fusion("concat", [16, 6], 2)
    with pytest.raises(ValueError, match="one T-Net per privileged"):
        Student(fusion, {}, order=["video", "eda"], prevalent=["video"])
    with pytest.raises(ValueError, match="subset"):
        Student(fusion, {"eda": TNet(16, 6)}, order=["video", "eda"], prevalent=["audio"])
    with pytest.raises(ValueError, match="backbones"):
        Student(fusion, {"eda": TNet(16, 6)}, ["video", "eda"], ["video"], backbones={"eda": nn.Identity()})
    with pytest.raises(ValueError, match="fusion takes 2"):
        Student(fusion, {"eda": TNet(16, 6), "emg": TNet(16, 6)}, ["video", "eda", "emg"], ["video"])


def test_tnets_stay_frozen_and_in_eval_mode():
    student = make_student(dropout=0.5).train()
    assert student.fusion.training and not student.tnets.training
    assert not any(m.training for m in student.tnets.modules())
    x = {"video": torch.randn(8, 16)}
    student(x)
    first = [f.clone() for f in student.fusion.seen]
    student(x)
    torch.testing.assert_close(first[0], student.fusion.seen[0])  # dropout inactive: deterministic
    out, _ = student(x)
    out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in student.tnets.parameters())
    trainable = {id(p) for p in student.trainable_parameters()}
    assert trainable == {id(p) for p in student.fusion.parameters()}


def test_student_with_backbone_on_raw_sequences():
    torch.manual_seed(0)
    backbone = build_backbone("tiny3d", out_dim=16, width=4)
    tnets = {"eda": TNet(16, 8)}
    fusion = build_fusion("concat", [16, 8], 2, hidden=12)
    student = Student(
        fusion, tnets, order=["video", "eda"], prevalent=["video"], backbones={"video": backbone}
    )
    trainable = {id(p) for p in student.trainable_parameters()}
    assert trainable == {id(p) for p in [*fusion.parameters(), *backbone.parameters()]}
    clips = torch.randn(2, 3, 3, 4, 16, 16)  # B x L x C x T x H x W
    out, joint = student({"video": clips})
    assert out.shape == (2, 3, 2) and joint.shape == (2, 3, 12)
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())
    student.eval()
    with torch.no_grad():
        per_clip = student.encode({"video": clips})["video"]
        torch.testing.assert_close(per_clip[1, 2], backbone(clips[1, 2:3])[0], atol=1e-5, rtol=1e-4)
        single = student({"video": clips[:, 0]})[0]
        assert single.shape == (2, 2)


def test_student_with_real_fusion_on_cached_features():
    fusion = build_fusion("mmt", [512, 512], 2)
    student = Student(fusion, {"emg": TNet(512, 512)}, order=["video", "emg"], prevalent=["video"]).eval()
    out, joint = student({"video": torch.randn(5, 512)})
    assert out.shape == (5, 2) and joint.shape == (5, 512)


def test_tnet_input_is_the_prevalent_features_in_prevalent_order():
    torch.manual_seed(0)
    tnet = TNet(16 + 4, 6)
    fusion = Recorder([4, 6, 16])
    student = Student(fusion, {"eda": tnet}, order=["audio", "eda", "video"], prevalent=["video", "audio"])
    video, audio = torch.randn(3, 16), torch.randn(3, 4)
    student({"audio": audio, "video": video})
    torch.testing.assert_close(fusion.seen[1], tnet(torch.cat([video, audio], dim=-1)))
    torch.testing.assert_close(fusion.seen[0], audio)
    with pytest.raises(ValueError, match="leading axes"):
        student({"audio": torch.randn(3, 2, 4), "video": video})
