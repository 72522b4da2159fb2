"""SinkhornLoss and RelationalOTLoss: oracle (POT), grad mode, finite checks, no host sync, small batches."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import pytest
import torch

from mtpkdot.distill import RelationalOTLoss, SinkhornLoss, relational_clouds, similarity_matrix


def _pot_entropic_ot(x: np.ndarray, y: np.ndarray, reg: float) -> float:
    # geomloss' cost for p=2 is |x-y|^2 / 2; ot.dist gives |x-y|^2. `.value` includes the entropic term
    # reg * KL(pi | a x b), as geomloss' dual value does (`.value_linear` does not).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(ot.solve(0.5 * ot.dist(x, y), reg=reg, reg_type="KL").value)


def _pot_debiased(x: np.ndarray, y: np.ndarray, reg: float = 0.01) -> float:
    return _pot_entropic_ot(x, y, reg) - 0.5 * (_pot_entropic_ot(x, x, reg) + _pot_entropic_ot(y, y, reg))


def test_sinkhorn_matches_pot_debiased_divergence_at_converged_scaling():
    torch.manual_seed(0)
    x = torch.rand(14, 4, dtype=torch.float64)
    y = torch.rand(11, 4, dtype=torch.float64) * 1.3
    expected = _pot_debiased(x.numpy(), y.numpy())
    got = float(SinkhornLoss(scaling=0.9995)(x, y))
    assert got == pytest.approx(expected, rel=2e-5)
    # the default scaling is close but measurably less converged
    fast = float(SinkhornLoss()(x, y))
    assert abs(fast - expected) / expected < 0.05


def test_sinkhorn_raw_equals_pot_entropic_ot():
    torch.manual_seed(1)
    x = torch.rand(10, 3, dtype=torch.float64)
    y = torch.rand(9, 3, dtype=torch.float64)
    got = float(SinkhornLoss(scaling=0.9995, debias=False)(x, y))
    assert got == pytest.approx(_pot_entropic_ot(x.numpy(), y.numpy(), 0.01), rel=2e-5)


def test_sinkhorn_scalar_nonnegative_and_zero_on_equal_clouds():
    torch.manual_seed(2)
    x = torch.randn(16, 5, dtype=torch.float64)
    loss = SinkhornLoss()
    v = loss(x, x.clone())
    assert v.dim() == 0
    assert abs(float(v)) < 1e-8
    assert float(loss(x, torch.randn(16, 5, dtype=torch.float64) + 1)) > 0


def test_sinkhorn_restores_grad_mode_and_gives_no_graph_under_no_grad():
    x = torch.randn(8, 3, requires_grad=True)
    y = torch.randn(8, 3)
    loss = SinkhornLoss()
    with torch.no_grad():
        v = loss(x, y)
        assert not torch.is_grad_enabled()
    assert not v.requires_grad
    v = loss(x, y)
    assert v.requires_grad
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sinkhorn_raises_on_non_finite_input(bad):
    x = torch.randn(6, 3)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        SinkhornLoss()(x, torch.randn(6, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        SinkhornLoss()(torch.randn(6, 3), x)


def test_relational_raises_on_nan_features():
    s = torch.randn(10, 4)
    s[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        RelationalOTLoss(k=3)(s, torch.randn(10, 6))


def test_sinkhorn_shape_errors():
    with pytest.raises(ValueError, match="point clouds"):
        SinkhornLoss()(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="scaling"):
        SinkhornLoss(scaling=1.0)


def test_relational_clouds_follow_the_recipe():
    torch.manual_seed(3)
    s = torch.randn(9, 5, dtype=torch.float64)
    t = torch.randn(9, 7, dtype=torch.float64)
    x, y, s_s, s_t, k = relational_clouds(s, t, 4)
    assert k == 4 and x.shape == y.shape == (9, 4)
    st, ss = similarity_matrix(t), similarity_matrix(s)
    order = np.argsort(st.numpy() + np.diag(np.full(9, np.inf)), axis=1)[:, :4]
    np.testing.assert_allclose(y.numpy(), np.take_along_axis((st - st.min()).numpy(), order, 1), atol=1e-12)
    np.testing.assert_allclose(x.numpy(), np.take_along_axis((ss - ss.min()).numpy(), order, 1), atol=1e-12)
    assert float(y.min()) >= 0 and float(x.min()) >= 0
    # the analytic diameter bound used by RelationalOTLoss holds
    assert float(torch.cdist(torch.cat([x, y]), torch.cat([x, y])).max()) <= 2 * math.sqrt(k)


def test_relational_loss_matches_sinkhorn_on_the_clouds_and_centroids():
    torch.manual_seed(4)
    s = torch.randn(20, 6, dtype=torch.float64)
    t = torch.randn(20, 9, dtype=torch.float64)
    out = RelationalOTLoss(k=5, centroid="similarity", scaling=0.9)(s, t)
    x, y, s_s, s_t, _ = relational_clouds(s, t, 5)
    assert float(out["ot"]) == pytest.approx(float(SinkhornLoss(scaling=0.9)(x, y)), rel=1e-3)
    expected_c = float(((s_t.mean(0) - s_s.mean(0)) ** 2).sum())
    assert float(out["centroid"]) == pytest.approx(expected_c, rel=1e-12)
    assert set(RelationalOTLoss(k=5)(s, t)) == {"ot"}


def test_relational_centroid_features_space():
    s = torch.randn(6, 4, dtype=torch.float64)
    t = torch.randn(6, 4, dtype=torch.float64)
    out = RelationalOTLoss(k=3, centroid="features")(s, t)
    assert float(out["centroid"]) == pytest.approx(float(((t.mean(0) - s.mean(0)) ** 2).sum()))
    with pytest.raises(ValueError, match="equal feature dims"):
        RelationalOTLoss(k=3, centroid="features")(s, torch.randn(6, 5))


def test_relational_small_batches():
    s = torch.randn(5, 4, requires_grad=True)
    t = torch.randn(5, 3)
    out = RelationalOTLoss(k=30, centroid="similarity")(s, t)  # b <= k: k = b - 1
    x, y, *_ = relational_clouds(s, t, 30)
    assert x.shape == (5, 4)
    out["ot"].backward()
    assert torch.isfinite(s.grad).all()
    one = torch.randn(1, 4, requires_grad=True)
    out = RelationalOTLoss(k=30, centroid="similarity")(one, torch.randn(1, 3))
    assert float(out["ot"].detach()) == 0 and float(out["centroid"].detach()) == 0
    out["ot"].backward()  # connected to the graph, zero gradient
    assert torch.all(one.grad == 0)


def test_relational_teacher_gets_no_gradient_and_sequences_are_flattened():
    s = torch.randn(3, 4, 6, requires_grad=True)  # B x L x d
    t = torch.randn(3, 4, 5, requires_grad=True)
    out = RelationalOTLoss(k=5, centroid="similarity")(s, t)
    (out["ot"] + out["centroid"]).backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_relational_loss_accelerator_path_reads_nothing_back(monkeypatch):
    """No device-to-host copy in the loss path on an accelerator: with the CPU fast paths switched off
    (``on_host`` -> False, the branch a CUDA tensor takes), geomloss' diameter estimate (``.item()``) is
    never used and no tensor is converted to a Python value or a numpy array in forward and backward."""
    import sys

    import mtpkdot.distill.similarity as sim
    from mtpkdot.distill import _sinkhorn

    sd = sys.modules[_sinkhorn.sinkhorn_loop.__module__]  # geomloss' module, wherever this version keeps it

    def forbidden(*args, **kwargs):
        raise AssertionError("device-to-host read in the loss path")

    s = torch.randn(16, 8, requires_grad=True)
    t = torch.randn(16, 8)
    loss = RelationalOTLoss(k=6, centroid="similarity")
    monkeypatch.setattr(sim, "on_host", lambda x: False)
    monkeypatch.setattr(sd, "max_diameter", forbidden)
    monkeypatch.setattr(_sinkhorn, "max_diameter", forbidden)
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    out = loss(s, t)
    (out["ot"] + out["centroid"]).backward()
    monkeypatch.undo()
    assert torch.isfinite(s.grad).all()
    # the accelerator path uses the analytic diameter bound: same value as diameter="bound" on the CPU
    ref = RelationalOTLoss(k=6, centroid="similarity", diameter="bound")(s, t)
    assert float(out["ot"].detach()) == pytest.approx(float(ref["ot"].detach()), rel=1e-6)


def test_cpu_fast_paths_agree_with_the_accelerator_paths(monkeypatch):
    import mtpkdot.distill.similarity as sim
    from mtpkdot.distill import select_anchors

    torch.manual_seed(5)
    for dtype in (torch.float32, torch.float64):
        s = similarity_matrix(torch.randn(40, 16, dtype=dtype))
        fast = select_anchors(s, 7)
        with monkeypatch.context() as m:
            m.setattr(sim, "on_host", lambda x: False)
            slow = select_anchors(s, 7)
        assert torch.equal(fast, slow) and fast.dtype == torch.long
    # degenerate rows (zero and duplicate features) tie with the diagonal: it is still never an anchor,
    # and both paths pick the same similarity values (the order of exact ties may differ)
    x = torch.randn(20, 8)
    x[3] = x[7] = 0
    x[6] = x[5]
    s = similarity_matrix(x)
    fast = select_anchors(s, 10)
    with monkeypatch.context() as m:
        m.setattr(sim, "on_host", lambda x: False)
        slow = select_anchors(s, 10)
    assert not (fast == torch.arange(20)[:, None]).any()
    assert torch.equal(s.gather(1, fast), s.gather(1, slow))
    # diameter: CPU "auto" reads the bounding box (as geomloss does), within the accuracy of scaling 0.5
    st, tt = torch.randn(32, 8, dtype=torch.float64), torch.randn(32, 12, dtype=torch.float64)
    auto = RelationalOTLoss(k=6)(st, tt)["ot"]
    x, y, *_ = relational_clouds(st, tt, 6)
    assert float(auto) == pytest.approx(float(SinkhornLoss()(x, y)), rel=1e-12)  # geomloss' own estimate
    bound = RelationalOTLoss(k=6, diameter="bound")(st, tt)["ot"]
    converged = float(SinkhornLoss(scaling=0.995)(x, y))
    assert float(auto) == pytest.approx(converged, rel=0.02) and float(bound) == pytest.approx(
        converged, rel=0.02
    )
    with pytest.raises(ValueError, match="diameter"):
        RelationalOTLoss(diameter="wide")  # type: ignore[arg-type]


def test_relational_loss_inside_autocast_runs_in_full_precision():
    torch.manual_seed(7)
    s = torch.randn(24, 16, requires_grad=True)
    t = torch.randn(24, 16)
    ref = RelationalOTLoss(k=5, centroid="similarity")(s, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = RelationalOTLoss(k=5, centroid="similarity")(s, t)
    assert got["ot"].dtype == torch.float32
    for key in ref:
        assert float(got[key].detach()) == pytest.approx(float(ref[key].detach()), rel=1e-6)
    got["ot"].backward()
    assert torch.isfinite(s.grad).all()
