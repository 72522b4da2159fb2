"""results/power.py: its classifier is sklearn's logistic regression, its power curve is read correctly,
and a small run writes its tables (the full run is for the release; README quotes it)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def power():
    spec = importlib.util.spec_from_file_location("power", ROOT / "results" / "power.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_newton_fit_predicts_like_sklearn_logistic_regression(power):
    from sklearn.linear_model import LogisticRegression

    from mtpkdot.data import fold_indices, make_folds

    args = power.parse([])
    world = power.draw_world(np.random.default_rng(3), args)
    y = world["label"].to_numpy()
    split = fold_indices(world, make_folds(world, "kfold", 5, 1), 2, 0.2, 1)
    x = np.vstack([world["video"], world["video"] + 0.3 * world["eda"], world["eda"] * 5 - 2])
    train = np.r_[split["train"], split["val"]]
    ref = [
        100
        * (
            LogisticRegression().fit(row[train, None], y[train]).predict(row[split["test"], None])
            == y[split["test"]]
        ).mean()
        for row in x
    ]
    np.testing.assert_allclose(power.accuracies(x, y, split), ref)


def test_world_follows_the_generator_latents(power):
    args = power.parse(["--subjects", "400", "--video-noise", "0", "--subject-noise", "0"])
    world = power.draw_world(np.random.default_rng(0), args)
    pa4 = world[world["label"] == 1]
    assert len(world) == 400 * 16 and (world[world["label"] == 0]["video"] == 0).all()
    # non-responders (probability 0.2) show nothing; the face saturates at 2
    silent = pa4.groupby("subject_id")["video"].max() == 0
    assert silent.mean() == pytest.approx(0.2, abs=0.05)
    assert pa4["video"].max() <= 2.0


def test_smallest_detectable_interpolates_where_power_crosses_80(power):
    curve = pd.DataFrame({"true_diff": [0.0, 1.0, 2.0, 3.0], "power": [0.05, 0.5, 0.7, 0.9]})
    assert power.smallest_detectable(curve) == pytest.approx(2.5)
    assert math.isnan(power.smallest_detectable(curve.assign(power=[0.0, 0.1, 0.2, 0.3])))


def test_small_run_writes_tables_and_null_arms_do_not_differ(power, tmp_path):
    out = tmp_path / "power"
    table = power.main(["--reps", "4", "--workers", "1", "--out", str(out)])
    assert (out / "power.csv").is_file() and "Smallest true difference" in (out / "power.md").read_text()
    assert list(table["lam"]) == list(power.LAMS) and (table["reps"] == 4).all()
    assert abs(table["true_diff"].iloc[0]) < 1.0  # arms exchangeable at lam = 0
    assert table["true_diff"].iloc[-1] > 3.0  # the planted information shows
