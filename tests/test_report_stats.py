"""Paired Wilcoxon tests and the sentences generated from the numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from mtpkdot.report.stats import min_reachable_p, paired_values, wilcoxon_test
from mtpkdot.report.tables import aggregate, findings, stats_table


def summary_from(values: dict[str, list[float]], seeds=(0,)) -> pd.DataFrame:
    rows = []
    n = len(next(iter(values.values())))
    for i in range(n):
        for method, vals in values.items():
            rows.append({"seed": seeds[i % len(seeds)], "fold": i, "method": method, "accuracy": vals[i]})
    return pd.DataFrame(rows)


def test_pairs_are_matched_on_seed_and_fold_not_on_row_order():
    rng = np.random.default_rng(3)
    rows = []
    for seed in (0, 1):
        for fold in range(4):
            base = rng.normal(70, 5)
            rows.append({"seed": seed, "fold": fold, "method": "none", "accuracy": base})
            rows.append(
                {"seed": seed, "fold": fold, "method": "pkdot", "accuracy": base + 1 + rng.normal(0, 0.3)}
            )
    df = pd.DataFrame(rows)
    shuffled = df.sample(frac=1.0, random_state=1)
    shuffled = shuffled[
        ~((shuffled["method"] == "pkdot") & (shuffled["seed"] == 1) & (shuffled["fold"] == 3))
    ]
    x, y = paired_values(shuffled, "pkdot", "none", "accuracy")
    assert len(x) == 7  # the missing (seed 1, fold 3) result drops that pair only
    np.testing.assert_allclose(x - y, (x - y).clip(min=0))  # every matched difference is positive here
    wide = df.pivot_table(index=["seed", "fold"], columns="method", values="accuracy").drop((1, 3))
    np.testing.assert_allclose(x - y, (wide["pkdot"] - wide["none"]).to_numpy())  # in (seed, fold) order
    stat, p, _ = wilcoxon_test(x, y)
    ref = wilcoxon(wide["pkdot"], wide["none"], zero_method="wilcox", alternative="two-sided")
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("seed", range(5))
def test_wilcoxon_matches_scipy_with_ties_and_zeros(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(70, 2, 12), 0)
    y = x + rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0], 12)
    stat, p, reason = wilcoxon_test(x, y)
    ref = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    assert reason == ""
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize(
    "x,y",
    [([70.0], [71.0]), ([70.0, 71.0], [70.0, 71.0]), ([70.0, 71.0, 72.0], [70.0, 71.0, 73.0])],
    ids=["one pair", "all zero", "one nonzero"],
)
def test_too_few_pairs_gives_no_p(x, y):
    stat, p, reason = wilcoxon_test(np.array(x), np.array(y))
    assert math.isnan(p) and math.isnan(stat)
    assert reason.startswith("n too small")


def test_min_reachable_p():
    assert min_reachable_p(5) == pytest.approx(0.0625)
    assert min_reachable_p(6) == pytest.approx(0.03125)
    # the exact two-sided test with all differences of one sign reaches exactly that bound
    assert wilcoxon(np.arange(6) + 1.0, np.zeros(6)).pvalue == pytest.approx(min_reachable_p(6))


def _corrected_p(d: np.ndarray, ratio: float) -> float:
    """Independent re-derivation: t = mean / sqrt((1/J + n2/n1) s^2), two-sided p from t(J - 1)."""
    from scipy.stats import t as student_t

    J = len(d)
    t = d.mean() / np.sqrt((1 / J + ratio) * d.var(ddof=1))
    return float(2 * student_t.sf(abs(t), J - 1))


def test_does_not_improve_sentence_appears_exactly_when_mean_is_not_higher():
    s = summary_from(
        {
            "lower_bound": [69, 70, 71, 72, 73, 73],
            "none": [70, 71, 72, 73, 74, 75],
            "cosine": [69, 70, 71, 72, 73, 76],  # mean 71.83 < 72.5
            "mse": [70, 71, 72, 73, 74, 75],  # equal mean: "not higher" -> does not improve
            "pkdot": [72, 73, 74, 75, 76, 77],
            "mtpkdot": [71, 72, 74, 74, 75, 78],  # 74.0 vs PKDOT 74.5: does not beat PKDOT
            "teacher": [80, 81, 82, 83, 84, 85],
        }
    )
    text = findings(s)
    joined = "\n".join(text)
    assert "Cosine PKD does not improve over the student without distillation" in joined
    assert "MSE PKD does not improve over the student without distillation" in joined
    assert "Cosine PKD is above the lower bound" in joined  # 71.83 vs 71.33
    assert "the student without distillation is above the lower bound" in joined
    assert "PKDOT is above the lower bound" in joined and "PKDOT is above the student without" in joined
    assert "PKDOT does not improve" not in joined
    assert "MT-PKDOT does not beat PKDOT on this run (74.00 vs 74.50" in joined
    # cosine's sentence carries its own numbers and the corrected test that goes with them
    cos = next(t for t in text if t.startswith("Accuracy (%): Cosine PKD does not improve"))
    d = s[s.method == "cosine"].accuracy.to_numpy(float) - s[s.method == "none"].accuracy.to_numpy(float)
    p = _corrected_p(d, 1 / (6 - 1))  # no split sizes given: n2/n1 = 1/(K-1) for the K = 6 folds
    assert "71.83 vs 72.50" in cos and f"corrected t-test p={p:.3f}" in cos
    assert "6 pairs, 1 seed(s)" in cos


def test_beats_sentence_and_gap_closed():
    s = summary_from(
        {
            "lower_bound": [69, 70, 71, 72, 73, 74],
            "none": [70, 71, 72, 73, 74, 75],
            "pkdot": [71, 72, 73, 74, 75, 76],
            "mtpkdot": [72, 73.5, 74, 75.5, 76, 76],
            "teacher": [80, 81, 82, 83, 84, 85],
        }
    )
    joined = "\n".join(findings(s, ratio=0.25))
    d = np.array([1, 1.5, 1, 1.5, 1, 0])
    p = _corrected_p(d, 0.25)
    assert p < 0.05
    assert "MT-PKDOT is above PKDOT on this run (74.50 vs 73.50; Δ +1.00 [" in joined
    assert f"corrected t-test p={p:.3f}, significant at the 0.05 level" in joined
    assert "does not improve" not in joined
    # the gap is measured from the true lower bound: (74.5 - 71.5) / (82.5 - 71.5)
    assert "closes 27 % of the gap between the lower bound (71.50) and the upper bound" in joined


def test_teacher_below_lower_bound_is_said():
    s = summary_from(
        {"lower_bound": [70, 71, 72], "none": [70, 71, 72], "mtpkdot": [71, 72, 73], "teacher": [69, 70, 71]}
    )
    assert any("the multimodal teacher (70.00) is not above the lower bound" in t for t in findings(s))


def test_older_run_without_lower_bound_says_so_and_measures_from_none():
    s = summary_from({"none": [70, 71, 72], "mtpkdot": [71, 72.5, 73], "teacher": [80, 81, 82]})
    text = findings(s)
    assert any("no `lower_bound` row" in t for t in text)
    assert any("MT-PKDOT is above the student without distillation" in t for t in text)
    assert any("gap between the student without distillation (71.00)" in t for t in text)
    _, rows = stats_table(s)
    assert {r[1] for r in rows} == {"none"}


def test_regression_findings_per_target():
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(5):
        for m, shift in (("none", 0.0), ("mtpkdot", -0.05), ("teacher", 0.2)):
            rows.append(
                {
                    "seed": 0,
                    "fold": fold,
                    "method": m,
                    "ccc_valence": 0.4 + shift + rng.normal(0, 0.01),
                    "ccc_arousal": 0.5 - shift + rng.normal(0, 0.01),
                    "ccc_mean": 0.0,
                }
            )
    text = findings(pd.DataFrame(rows))
    assert any(t.startswith("CCC valence: MT-PKDOT does not improve") for t in text)
    assert any(t.startswith("CCC arousal: MT-PKDOT is above") for t in text)
    headers, trows = stats_table(pd.DataFrame(rows))
    assert {r[2] for r in trows} == {"CCC valence", "CCC arousal"}


def test_aggregate_std_is_sample_std_and_nan_for_one_value():
    s = summary_from({"none": [70.0, 72.0, 77.0], "kl": [60.0, float("nan"), float("nan")]})
    agg = aggregate(s).set_index("method")
    assert agg.loc["none", "std"] == pytest.approx(np.std([70, 72, 77], ddof=1))
    assert agg.loc["kl", "n"] == 1 and math.isnan(agg.loc["kl", "std"])


def test_duplicate_rows_are_an_error():
    s = summary_from({"none": [70, 71], "pkdot": [71, 72]})
    s = pd.concat([s, s.iloc[[0]]])
    with pytest.raises(ValueError, match="several rows"):
        paired_values(s, "pkdot", "none", "accuracy")


def test_rows_take_their_label_order_and_name_from_the_method_and_the_reference_rows():
    from mtpkdot.distill import Method
    from mtpkdot.registry import METHODS
    from mtpkdot.report.tables import ordered_methods, results_table

    class Toy(Method):
        label = "Toy distillation"
        short_name = "the toy"
        order = 55  # between PKDOT and MT-PKDOT

    METHODS.register("toy")(Toy)
    try:
        s = summary_from(
            {
                "teacher": [80, 81, 82],
                "mtpkdot": [72, 73, 74],
                "toy": [73, 74, 75],
                "old": [70, 70, 70],  # a method of an older run, registered no more
                "pkdot": [71, 72, 73],
                "lower_bound": [69, 70, 71],
            }
        )
        assert ordered_methods(s) == ["lower_bound", "pkdot", "toy", "mtpkdot", "old", "teacher"]
        labels = {row[0]: row[1] for row in results_table(s)[1]}
        assert labels["toy"] == "Toy distillation" and labels["old"] == "old"
        assert labels["mtpkdot"] == "MT-PKDOT (multi-teacher, OT + centroid)"
        assert labels["lower_bound"].startswith("Lower bound") and labels["teacher"].startswith("Upper bound")
        assert any("the toy is above the lower bound" in t for t in findings(s))
    finally:
        METHODS._items.pop("toy")
