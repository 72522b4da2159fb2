"""Statistics for repeated cross-validation: the corrected resampled t-test, its interval, and the
Wilcoxon test on per-repetition means, each checked against a computation that does not use our code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtpkdot.report.stats import corrected_t_test, cv_compare, repetition_means, size_ratio


def test_hand_worked_example():
    # 2 folds x 2 repetitions, d = 1, 3, 2, 2: mean 2, sample variance 2/3; 2-fold CV has n2/n1 = 1, so
    # the corrected variance of the mean is (1/4 + 1) * 2/3 = 5/6 and t = 2 / sqrt(5/6) with 3 df
    r = corrected_t_test(np.array([1.0, 3.0, 2.0, 2.0]), 1.0)
    assert r.t == pytest.approx(2.0 / math.sqrt(5.0 / 6.0), rel=1e-12)
    assert r.df == 3
    # t = 2.19 lies between the one-sided 90 % (1.638) and 95 % (2.353) points of t(3): 0.1 < p < 0.2
    assert 0.1 < r.p < 0.2
    assert r.ci_low == pytest.approx(2.0 - 3.182446305284263 * math.sqrt(5.0 / 6.0), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_bouckaert_frank_variance_factor_form(seed):
    """Independent form: t = mean / sqrt(F s^2 / R) with R = K T results and F = 1 + T K / (K - 1)
    (the correction factor for K folds repeated T times, n2 / n1 = 1 / (K - 1)), p from t(R - 1)."""
    rng = np.random.default_rng(seed)
    K, T = 5, 3
    d = rng.normal(0.8, 2.0, K * T)
    R = K * T
    F = 1 + T * K / (K - 1)
    t_ref = d.mean() / math.sqrt(F * d.var(ddof=1) / R)
    p_ref = 2 * stats.t.sf(abs(t_ref), R - 1)
    half = stats.t.ppf(0.975, R - 1) * math.sqrt(F * d.var(ddof=1) / R)
    r = corrected_t_test(d, 1 / (K - 1))
    assert r.t == pytest.approx(t_ref, rel=1e-10) and r.p == pytest.approx(p_ref, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-10)
    # and it is scipy's one-sample t scaled by sqrt(1 / (1 + J n2/n1)): wider than the plain test
    plain = stats.ttest_1samp(d, 0.0)
    assert r.t == pytest.approx(plain.statistic / math.sqrt(1 + R / (K - 1)), rel=1e-10)
    assert r.p > plain.pvalue


def test_interval_covers_zero_exactly_when_p_is_above_alpha():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = rng.normal(rng.uniform(0, 2), 1.5, 15)
        r = corrected_t_test(d, 0.25)
        assert (r.ci_low <= 0 <= r.ci_high) == (r.p >= 0.05)


def test_null_rejection_rate_under_independent_differences():
    """Differences drawn independently (no overlap at all) with ratio -> 0 is the plain t-test: 5 % level."""
    rng = np.random.default_rng(2)
    p = np.array([corrected_t_test(rng.normal(0, 1, 15), 1e-12).p for _ in range(4000)])
    assert abs((p < 0.05).mean() - 0.05) < 0.012


@pytest.mark.parametrize(
    "d,ratio,reason",
    [
        ([0.5], 0.25, "n too small"),
        ([0.0] * 6, 0.25, "all differences zero"),
        ([1.0] * 4, 0.25, "all differences equal"),
        ([1.0, 2.0], math.nan, "n_test/n_train unknown"),
    ],
)
def test_no_p_when_the_test_cannot_say_anything(d, ratio, reason):
    r = corrected_t_test(np.array(d), ratio)
    assert math.isnan(r.p) and r.reason == reason


def _summary(d: dict[tuple[int, int], float]) -> pd.DataFrame:
    rows = []
    for (seed, fold), diff in d.items():
        base = 70.0 + 3 * fold + seed
        rows += [
            {"seed": seed, "fold": fold, "method": "ref", "accuracy": base},
            {"seed": seed, "fold": fold, "method": "m", "accuracy": base + diff},
        ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def test_cv_compare_uses_per_seed_means_for_wilcoxon_and_all_pairs_for_t():
    rng = np.random.default_rng(4)
    diffs = {(s, k): float(rng.normal(1.0, 1.0)) for s in range(6) for k in range(1, 6)}
    del diffs[(2, 3)]  # a missing result drops that pair only
    c = cv_compare(_summary(diffs), "m", "ref", "accuracy", 0.25)
    d = np.array([diffs[k] for k in sorted(diffs)])
    assert c.n == 29 and c.reps == 6
    assert c.t.t == pytest.approx(corrected_t_test(d, 0.25).t, rel=1e-9)
    per_seed = [np.mean([v for (s, _), v in diffs.items() if s == seed]) for seed in range(6)]
    ref = stats.wilcoxon(per_seed, zero_method="wilcox", alternative="two-sided")
    assert c.p_wilcoxon == pytest.approx(ref.pvalue) and c.wilcoxon_stat == pytest.approx(ref.statistic)
    np.testing.assert_allclose(repetition_means(d, [s for s, _ in sorted(diffs)]), per_seed)


def test_three_seeds_cannot_reach_significance_with_wilcoxon_but_t_can():
    diffs = {(s, k): 2.0 + 0.1 * k for s in range(3) for k in range(5)}
    c = cv_compare(_summary(diffs), "m", "ref", "accuracy", 0.25)
    assert c.p_wilcoxon == pytest.approx(0.25)  # 2 / 2^3: the smallest two-sided p with 3 values
    assert c.p < 0.001


def test_size_ratio_is_mean_test_over_mean_train():
    sizes = pd.DataFrame({"n_train": [80, 40, 120], "n_test": [20, 30, 10]})
    assert size_ratio(sizes) == pytest.approx(20 / 80)  # the mean of per-fold ratios would be 0.361
    assert math.isnan(size_ratio(sizes.iloc[:0]))
