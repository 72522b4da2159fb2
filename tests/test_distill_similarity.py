"""Similarity matrices (Eqs. 2-5) and anchor selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtpkdot.distill import select_anchors, similarity_matrix


def test_similarity_matches_numpy_cosine():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    n = np.linalg.norm(x, axis=1, keepdims=True)
    expected = (x @ x.T) / (n @ n.T)  # Eq. 5 written with the outer product of the row norms
    got = similarity_matrix(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.diag(got), 1.0, atol=1e-12)


def test_zero_row_gives_zero_not_nan_and_finite_grad():
    x = torch.randn(4, 3, dtype=torch.float64)
    x[2] = 0
    x.requires_grad_(True)
    s = similarity_matrix(x)
    assert torch.isfinite(s).all()
    assert torch.all(s[2] == 0) and torch.all(s[:, 2] == 0)
    s.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_half_precision_computed_in_float32():
    x = torch.randn(5, 8).half()
    x[0] = 0
    s = similarity_matrix(x)
    assert s.dtype == torch.float32 and torch.isfinite(s).all()


def test_anchors_ascending_and_least_similar():
    torch.manual_seed(0)
    s = similarity_matrix(torch.randn(12, 6, dtype=torch.float64))
    idx = select_anchors(s, 4)
    assert idx.dtype == torch.long and idx.shape == (12, 4)
    vals = s.gather(1, idx)
    assert torch.all(vals[:, 1:] >= vals[:, :-1]), "anchors must be in ascending order of similarity"
    ref = np.argsort(s.numpy(), axis=1, kind="stable")[:, :4]  # independent oracle
    np.testing.assert_array_equal(idx.numpy(), ref)


@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anchor_order_at_a_size_where_argpartition_does_not_sort(path, dtype, monkeypatch):
    """At b = 400, k = 150 ``numpy.argpartition`` (and ``topk(sorted=False)``) leave many rows out of
    order; smaller sizes happen to come back sorted, so they cannot tell a missing sort."""
    import mtpkdot.distill.similarity as sim

    if path == "device":  # the accelerator path (torch.topk) on CPU tensors
        monkeypatch.setattr(sim, "on_host", lambda t: False)
    torch.manual_seed(0)
    s = similarity_matrix(torch.randn(400, 32, dtype=dtype))
    idx = select_anchors(s, 150)
    a = s.numpy().copy()
    np.fill_diagonal(a, np.inf)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(a, axis=1, kind="stable")[:, :150])


def test_diagonal_is_never_an_anchor_even_for_degenerate_batches():
    # identical rows: every similarity is 1, so ties reach the diagonal; it must still be excluded
    s = similarity_matrix(torch.ones(5, 3))
    idx = select_anchors(s, 4)
    rows = torch.arange(5).unsqueeze(1)
    assert not torch.any(idx == rows)
    # every other column is chosen exactly once per row
    assert torch.all(
        torch.sort(idx, dim=1).values == torch.tensor([[j for j in range(5) if j != i] for i in range(5)])
    )


def test_diagonal_allowed_when_not_excluded():
    s = similarity_matrix(torch.randn(4, 3))
    idx = select_anchors(s, 4, exclude_self=False)
    assert idx.shape == (4, 4)
    assert torch.all(idx[:, -1] == torch.arange(4))  # self-similarity is the largest: last


@pytest.mark.parametrize("k", [0, 5, 9])
def test_anchor_k_out_of_range_raises(k):
    s = similarity_matrix(torch.randn(5, 3))
    with pytest.raises(ValueError, match="anchors need"):
        select_anchors(s, k)


def test_anchor_input_must_be_square():
    with pytest.raises(ValueError, match="square"):
        select_anchors(torch.zeros(3, 4), 1)
