"""Point losses: CCC (vs torchmetrics), alignment (Eq. 1), cosine / MSE / KL baselines, centroid (Eq. 9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtpkdot.distill import (
    alignment_loss,
    ccc,
    ccc_loss,
    centroid_loss,
    cosine_loss,
    kl_loss,
    mse_loss,
    similarity_matrix,
)


def test_ccc_unbiased_matches_torchmetrics():
    import torchmetrics.functional as tm

    torch.manual_seed(0)
    x = torch.randn(50, dtype=torch.float64)
    y = 0.6 * x + 0.3 * torch.randn(50, dtype=torch.float64) + 0.4
    expected = tm.concordance_corrcoef(x, y)
    assert float(ccc(x, y, correction=1)) == pytest.approx(
        float(expected), abs=1e-7
    )  # 1e-8 eps in the denominator
    # two columns at once
    x2, y2 = torch.stack([x, y], 1), torch.stack([y, x * 2], 1)
    np.testing.assert_allclose(
        ccc(x2, y2, correction=1).numpy(), tm.concordance_corrcoef(x2, y2).numpy(), atol=1e-7
    )


def test_ccc_population_form_eq8():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40) * 0.5 - 0.2
    # identity for population moments: CCC = 1 - E[(x-y)^2] / (var x + var y + (mx - my)^2)
    expected = 1 - np.mean((x - y) ** 2) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    got = float(ccc(torch.from_numpy(x), torch.from_numpy(y)))
    assert got == pytest.approx(expected, abs=1e-8)
    assert float(ccc_loss(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(1 - expected, abs=1e-8)
    assert float(ccc(torch.from_numpy(x), torch.from_numpy(x))) == pytest.approx(1.0, abs=1e-8)


def test_ccc_mask_ignores_nan_entries():
    torch.manual_seed(2)
    x = torch.randn(30, dtype=torch.float64)
    y = x + 0.1 * torch.randn(30, dtype=torch.float64)
    mask = torch.ones(30, dtype=torch.bool)
    mask[::4] = False
    y_nan = y.clone()
    y_nan[~mask] = float("nan")
    got = ccc(x, y_nan, mask)
    assert float(got) == pytest.approx(float(ccc(x[mask], y[mask])), abs=1e-12)
    g = x.clone().requires_grad_(True)
    ccc_loss(g, y_nan, mask).backward()
    assert torch.isfinite(g.grad).all() and torch.all(g.grad[~mask] == 0)


def test_ccc_constant_inputs_are_finite():
    assert torch.isfinite(ccc(torch.ones(5), torch.ones(5)))


def test_alignment_loss_eq1_and_detached_joint():
    torch.manual_seed(3)
    joint = torch.randn(8, 6, requires_grad=True)
    a1 = torch.randn(8, 6, requires_grad=True)
    a2 = torch.randn(8, 6, requires_grad=True)
    loss = alignment_loss([a1, a2], joint)
    expected = sum((1 - F.cosine_similarity(a, joint, dim=1)).mean() for a in (a1, a2))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    assert joint.grad is None and a1.grad is not None and a2.grad is not None
    assert float(alignment_loss([joint.detach() * 3], joint)) == pytest.approx(0.0, abs=1e-6)


def test_cosine_and_mse_baselines():
    torch.manual_seed(4)
    s = torch.randn(5, 4, requires_grad=True)
    t = torch.randn(5, 4, requires_grad=True)
    expected = np.mean(
        [
            1 - np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
            for a, b in zip(s.detach().numpy(), t.detach().numpy(), strict=True)
        ]
    )
    assert float(cosine_loss(s, t).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(mse_loss(s, t).detach()) == pytest.approx(float(((s - t) ** 2).mean().detach()), rel=1e-6)
    (cosine_loss(s, t) + mse_loss(s, t)).backward()
    assert t.grad is None  # the teacher is detached
    with pytest.raises(ValueError, match="same shape"):
        cosine_loss(s, torch.randn(5, 3))


def test_kl_loss_hinton():
    torch.manual_seed(5)
    s = torch.randn(6, 3, dtype=torch.float64)
    t = torch.randn(6, 3, dtype=torch.float64)
    temp = 2.5
    p = torch.softmax(t / temp, 1).numpy()
    q = torch.softmax(s / temp, 1).numpy()
    expected = temp**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1))
    assert float(kl_loss(s, t, temp)) == pytest.approx(expected, rel=1e-10)
    assert float(kl_loss(t, t, temp)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        kl_loss(s, t, 0)


def test_centroid_loss_both_spaces():
    torch.manual_seed(6)
    t = torch.randn(7, 5, dtype=torch.float64)
    s = torch.randn(7, 3, dtype=torch.float64)
    c = centroid_loss(s, t)  # similarity space, dims may differ
    expected = ((similarity_matrix(t).mean(0) - similarity_matrix(s).mean(0)) ** 2).sum()
    assert float(c) == pytest.approx(float(expected), rel=1e-12)
    assert float(centroid_loss(t, t)) == pytest.approx(0.0, abs=1e-14)
    s5 = torch.randn(7, 5, dtype=torch.float64)
    assert float(centroid_loss(s5, t, space="features")) == pytest.approx(
        float(((t.mean(0) - s5.mean(0)) ** 2).sum())
    )
    with pytest.raises(ValueError, match="equal feature dims"):
        centroid_loss(s, t, space="features")
    with pytest.raises(ValueError, match="space must be"):
        centroid_loss(s, t, space="other")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("cosine", {}),
        ("mse", {}),
        ("kl", {"temperature": 2.0}),
        ("centroid", {}),
        ("centroid", {"space": "features"}),
        ("relational_ot", {"k": 3, "centroid": "similarity"}),
    ],
)
def test_every_loss_takes_the_student_first_and_detaches_the_teacher(name, options):
    from mtpkdot.distill import build_loss

    torch.manual_seed(7)
    student = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    out = build_loss(name, **options)(student, teacher)
    total = sum(out.values()) if isinstance(out, dict) else out
    total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
