"""Golden regression values of the distillation core (tests/golden/distill_golden.json).

The values are regression values, not an independent oracle: they were produced by
``tests/golden/make_distill_golden.py`` (see its docstring) and guard against silent changes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"


def _maker():
    spec = importlib.util.spec_from_file_location("make_distill_golden", GOLDEN / "make_distill_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_golden_values():
    data = json.loads((GOLDEN / "distill_golden.json").read_text())
    maker = _maker()
    assert maker.make_inputs() == data["inputs"], "the inputs of the golden file changed"
    got = maker.compute(data["inputs"])
    expected = data["outputs"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key.startswith("anchors"):
            assert got[key] == value, key
        else:
            np.testing.assert_allclose(
                np.asarray(got[key]), np.asarray(value), rtol=1e-7, atol=1e-10, err_msg=key
            )


def test_golden_values_are_plausible():
    """Independent sanity bounds on the committed numbers (not copied from the output)."""
    out = json.loads((GOLDEN / "distill_golden.json").read_text())["outputs"]
    sim = np.asarray(out["similarity_teacher"])
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
    assert np.all(np.abs(sim) <= 1 + 1e-12)
    assert out["sinkhorn_default"] > 0 and out["sinkhorn_raw"] > out["sinkhorn_default"]
    # scaling 0.5 and 0.9 agree to a few percent (docs/distill.md)
    assert out["sinkhorn_default"] == pytest.approx(out["sinkhorn_scaling_0.9"], rel=0.05)
    assert out["relational_ot"] == pytest.approx(out["sinkhorn_default"], rel=0.05)
    assert all(-1 <= c <= 1 for c in out["ccc"])
    assert out["ccc_loss"] == pytest.approx(1 - np.mean(out["ccc"]))
