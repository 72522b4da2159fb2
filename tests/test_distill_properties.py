"""Property tests (hypothesis) for the distillation losses: scalar, >= 0, ~0 on equal inputs, invariance to
a joint permutation of the rows, finite gradients (also for degenerate inputs), grad mode unchanged."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mtpkdot.distill import (
    RelationalOTLoss,
    SinkhornLoss,
    ccc_loss,
    centroid_loss,
    cosine_loss,
    kl_loss,
    mse_loss,
)

# derandomize: the same examples on every run (the suite is deterministic); no example database on disk
PROPS = settings(max_examples=20, deadline=None, derandomize=True, database=None)


@st.composite
def feature_pairs(draw, min_b=2, max_b=10):
    """Student (b x d_s) and teacher (b x d_t) features, with degenerate ones (zero and repeated rows)."""
    b = draw(st.integers(min_b, max_b))
    d_s, d_t = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    elems = st.floats(-4, 4, allow_nan=False, allow_infinity=False, width=64)
    s = draw(arrays(np.float64, (b, d_s), elements=elems))
    t = draw(arrays(np.float64, (b, d_t), elements=elems))
    return torch.from_numpy(s), torch.from_numpy(t)


@st.composite
def generic_pairs(draw, min_b=3, max_b=12):
    """Continuous random features (no ties), sizes and scales drawn by hypothesis."""
    seed = draw(st.integers(0, 2**31 - 1))
    b = draw(st.integers(min_b, max_b))
    d_s, d_t = draw(st.integers(2, 8)), draw(st.integers(2, 8))
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, d_s, dtype=torch.float64, generator=g) * draw(st.floats(0.1, 10))
    t = torch.randn(b, d_t, dtype=torch.float64, generator=g) + draw(st.floats(-2, 2))
    return s, t, g


@PROPS
@given(feature_pairs(), st.integers(1, 12), st.sampled_from([None, "similarity"]))
def test_relational_scalar_nonnegative_finite_gradient(pair, k, centroid):
    s, t = pair
    s = s.clone().requires_grad_(True)
    out = RelationalOTLoss(k=k, centroid=centroid)(s, t)
    assert set(out) == ({"ot"} if centroid is None else {"ot", "centroid"})
    total = sum(out.values())
    for v in out.values():
        assert v.dim() == 0 and torch.isfinite(v)
        assert float(v.detach()) >= -1e-6
    total.backward()
    assert torch.isfinite(s.grad).all()


@PROPS
@given(generic_pairs())
def test_relational_zero_when_student_equals_teacher(data):
    _, t, _ = data
    out = RelationalOTLoss(k=4, centroid="similarity")(t.clone(), t)
    assert abs(float(out["ot"])) < 1e-9
    assert float(out["centroid"]) < 1e-20
    # scale does not matter: cosine similarity is scale invariant
    out = RelationalOTLoss(k=4, centroid="similarity")(3.0 * t, t)
    assert abs(float(out["ot"])) < 1e-9


@PROPS
@given(generic_pairs(), st.integers(1, 6))
def test_relational_invariant_to_a_joint_permutation_of_rows(data, k):
    s, t, g = data
    perm = torch.randperm(s.shape[0], generator=g)
    loss = RelationalOTLoss(k=k, centroid="similarity")
    a, b = loss(s, t), loss(s[perm], t[perm])
    for key in a:
        assert float(b[key]) == float(a[key]) or abs(float(b[key]) - float(a[key])) <= 1e-9 + 1e-7 * abs(
            float(a[key])
        )


@PROPS
@given(generic_pairs(min_b=2))
def test_sinkhorn_symmetric_permutation_invariant_and_grad_mode(data):
    s, t, g = data
    x = s[:, :2].clone().requires_grad_(True)
    y = t[:, :2]
    loss = SinkhornLoss()
    with torch.no_grad():
        v = loss(x, y)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled() and not v.requires_grad and v.dim() == 0
    perm = torch.randperm(x.shape[0], generator=g)
    assert abs(float(loss(x[perm], y).detach()) - float(v)) <= 1e-9 + 1e-7 * abs(float(v))
    w = loss(x, y)
    w.backward()
    assert torch.isfinite(x.grad).all()


@PROPS
@given(feature_pairs())
def test_relational_grad_mode_unchanged_under_no_grad(pair):
    s, t = pair
    s = s.clone().requires_grad_(True)
    with torch.no_grad():
        out = RelationalOTLoss(k=3, centroid="similarity")(s, t)
        assert not torch.is_grad_enabled()
    assert all(not v.requires_grad for v in out.values())
    assert torch.is_grad_enabled()


@PROPS
@given(generic_pairs())
def test_point_losses_nonnegative_and_zero_on_equal_inputs(data):
    s, t, _ = data
    d = min(s.shape[1], t.shape[1])
    a, b = s[:, :d], t[:, :d]
    for fn in (cosine_loss, mse_loss, lambda x, y: kl_loss(x, y, 2.0), centroid_loss):
        assert float(fn(a, b)) >= -1e-12
        assert abs(float(fn(b, b))) < 1e-9
    assert float(centroid_loss(s, t)) >= 0  # similarity space, different dims
    assert 0 <= float(ccc_loss(a[:, 0], b[:, 0])) <= 2
    assert abs(float(ccc_loss(b[:, 0], b[:, 0]))) < 1e-6
