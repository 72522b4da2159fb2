"""Paired Wilcoxon tests and the aggregation of summary.csv."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from mtpkdot.report.stats import min_reachable_p, paired_values, wilcoxon_test
from mtpkdot.report.tables import aggregate, stats_table


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


def test_stats_table_per_target_and_only_against_present_references():
    rows = []
    for fold in range(4):
        for m, shift in (("none", 0.0), ("mtpkdot", -0.05), ("teacher", 0.2)):
            rows.append(
                {
                    "seed": 0,
                    "fold": fold,
                    "method": m,
                    "ccc_valence": 0.4 + shift + 0.01 * fold,
                    "ccc_arousal": 0.5,
                }
            )
    _, trows = stats_table(pd.DataFrame(rows))
    assert {r[2] for r in trows} == {"CCC valence", "CCC arousal"}
    assert {r[1] for r in trows} == {"none"}  # no lower_bound, no pkdot in this run


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
    from mtpkdot.report.findings import findings_sentences
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
        assert any("the best student, the toy (74.00)" in t for t in findings_sentences(s))
    finally:
        METHODS._items.pop("toy")
