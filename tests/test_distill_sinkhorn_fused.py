"""The default ("fused") Sinkhorn path computes what geomloss.SamplesLoss computes, values and gradients."""

from __future__ import annotations

import pytest
import torch
from geomloss import SamplesLoss

from mtpkdot.distill import SinkhornLoss, _sinkhorn

pytestmark = pytest.mark.skipif(not _sinkhorn.AVAILABLE, reason="geomloss internals not found")


def _clouds(n: int, m: int, d: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=dtype)
    y = (torch.rand(m, d, generator=g, dtype=dtype) * 1.5 + 0.2).requires_grad_(True)
    return x.requires_grad_(True), y


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("scaling", [0.5, 0.9])
@pytest.mark.parametrize("diameter", [None, 4.0])
def test_fused_equals_samples_loss_values_and_gradients(p, debias, scaling, diameter):
    x, y = _clouds(23, 17, 6, torch.float64, seed=p + 10 * int(debias))
    ours = SinkhornLoss(p=p, debias=debias, scaling=scaling, diameter=diameter)
    assert ours.backend == "fused"
    ref = SamplesLoss("sinkhorn", p=p, blur=0.1, debias=debias, scaling=scaling, diameter=diameter)
    v_ours, v_ref = ours(x, y), ref(x, y)
    g_ours = torch.autograd.grad(v_ours, (x, y))
    g_ref = torch.autograd.grad(v_ref, (x, y))
    assert float(v_ours.detach()) == pytest.approx(float(v_ref.detach()), rel=1e-10, abs=1e-13)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b", [8, 64, 300])
def test_fused_equals_samples_loss_in_float32(b):
    x, y = _clouds(b, b, 30, torch.float32, seed=b)
    v_ours = SinkhornLoss()(x, y)
    v_ref = SinkhornLoss(backend="tensorized")(x, y)
    assert float(v_ours.detach()) == pytest.approx(float(v_ref.detach()), rel=1e-5)
    g_ours, g_ref = torch.autograd.grad(v_ours, x)[0], torch.autograd.grad(v_ref, x)[0]
    # float32 rounding differs entry by entry (each side is ~5e-5 of the largest entry away from the
    # float64 gradient); compare at the scale of the gradient
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=2e-4 * float(g_ref.abs().max()))


def test_inplace_softmin_equals_geomloss_softmin_with_and_without_graph():
    try:
        from geomloss._legacy.sinkhorn_samples import softmin_tensorized
    except ImportError:  # geomloss 0.2.x
        from geomloss.sinkhorn_samples import softmin_tensorized
    g = torch.Generator().manual_seed(3)
    c = torch.rand(2, 9, 7, generator=g, dtype=torch.float64) * 5
    h = torch.randn(2, 7, generator=g, dtype=torch.float64)
    for eps in (10.0, 0.01):
        with torch.no_grad():
            torch.testing.assert_close(_sinkhorn.softmin_inplace(eps, c, h), softmin_tensorized(eps, c, h))
        cg = c.clone().requires_grad_(True)
        ours = _sinkhorn.softmin_inplace(eps, cg, h)
        torch.testing.assert_close(ours, softmin_tensorized(eps, c, h))
        assert ours.requires_grad
    # the input cost matrix is never modified in place
    before = c.clone()
    with torch.no_grad():
        _sinkhorn.softmin_inplace(0.01, c, h)
    assert torch.equal(c, before)


def test_falls_back_to_samples_loss_when_geomloss_moves_its_internals(monkeypatch):
    x, y = _clouds(12, 10, 4, torch.float64, seed=5)
    expected = float(SinkhornLoss()(x, y).detach())
    monkeypatch.setattr(_sinkhorn, "AVAILABLE", False)
    monkeypatch.setattr(_sinkhorn, "sinkhorn_divergence", None)  # would raise if still called
    assert float(SinkhornLoss()(x, y).detach()) == pytest.approx(expected, rel=1e-10)


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be 'fused'"):
        SinkhornLoss(backend="dense")
