"""Paired statistics for the results tables of repeated k-fold cross-validation.

Seeds are repetitions of the cross-validation (seed s -> subject partition s, ``mtpkdot.data.splits``),
so one run gives r repetitions x k folds of paired differences ``d = method - reference`` matched on
(seed, fold). The folds of one repetition share most of their training subjects, and so do folds of
different repetitions, so the k r differences are correlated: a plain paired t-test or a Wilcoxon test
over the k r pairs treats them as independent and finds differences that are not there (Dietterich
1998; Nadeau & Bengio 2003). The report therefore leads with:

- :func:`corrected_t_test`: the corrected resampled t-test of Nadeau & Bengio (2003) in the form for
  r x k cross-validation of Bouckaert & Frank (2004):
  ``t = mean(d) / sqrt((1 / (k r) + n2 / n1) * var(d))`` with ``var`` the sample variance (ddof = 1),
  ``k r - 1`` degrees of freedom, and ``n2 / n1`` the ratio of test to training samples of a fold. The
  95 % interval of the mean difference uses the same corrected variance.
- :func:`repetition_wilcoxon`: the Wilcoxon signed-rank test on the per-repetition means of ``d`` (one
  value per seed), whose r values are independent by construction; with r values the smallest two-sided
  p it can reach is 2 / 2^r (0.25 for 3 seeds), so it can confirm but rarely detect.

:func:`wilcoxon_test` runs ``scipy.stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")``:
pairs with a zero difference are dropped (Wilcoxon's original treatment) and the hypothesis is two-sided
(a method may be worse as well as better than its reference).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

ZERO_METHOD = "wilcox"
ALTERNATIVE = "two-sided"
PAIR_KEYS = ("seed", "fold")


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def paired_values(
    summary: pd.DataFrame, method: str, reference: str, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``method`` and ``reference`` matched on (seed, fold), sorted by (seed, fold).

    Pairs where either value is missing (method not run on that fold, NaN metric) are left out.
    """
    merged = _matched(summary, method, reference, metric)
    return merged[f"{metric}_m"].to_numpy(float), merged[f"{metric}_r"].to_numpy(float)


def _matched(summary: pd.DataFrame, method: str, reference: str, metric: str) -> pd.DataFrame:
    cols = [*PAIR_KEYS, metric]
    a = summary.loc[summary["method"] == method, cols].dropna()
    b = summary.loc[summary["method"] == reference, cols].dropna()
    for name, frame in ((method, a), (reference, b)):
        if frame.duplicated(list(PAIR_KEYS)).any():
            raise ValueError(f"summary.csv has several rows for method {name!r} with the same (seed, fold)")
    return a.merge(b, on=list(PAIR_KEYS), suffixes=("_m", "_r")).sort_values(list(PAIR_KEYS))


def wilcoxon_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float, str]:
    """Two-sided Wilcoxon signed-rank test of ``x - y``; returns (statistic, p, reason).

    With fewer than two non-zero differences scipy returns p=1 (or a warning and NaN), which
    would read as "no difference found" when nothing could be found: we return NaN and
    "n too small" instead.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(x, float) - np.asarray(y, float)
    n_nonzero = int(np.count_nonzero(d))
    if len(d) < 2:
        return math.nan, math.nan, "n too small"
    if n_nonzero == 0:
        return math.nan, math.nan, "n too small (all differences zero)"
    if n_nonzero < 2:
        return math.nan, math.nan, "n too small"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = wilcoxon(x, y, zero_method=ZERO_METHOD, alternative=ALTERNATIVE)
    return float(res.statistic), float(res.pvalue), ""


def min_reachable_p(n_nonzero: int) -> float:
    """Smallest two-sided exact p a signed-rank test can give with ``n_nonzero`` pairs (2 / 2^n)."""
    return min(1.0, 2.0 / 2**n_nonzero) if n_nonzero > 0 else 1.0


@dataclass(frozen=True)
class CorrectedT:
    """Corrected resampled t-test of one vector of paired differences (see :func:`corrected_t_test`)."""

    mean: float
    ci_low: float
    ci_high: float
    t: float
    df: int
    p: float
    reason: str = ""


def corrected_t_test(d: np.ndarray, test_train_ratio: float, level: float = 0.95) -> CorrectedT:
    """Nadeau & Bengio's corrected resampled t-test of ``mean(d) = 0`` over the k r differences ``d``.

    ``t = mean(d) / sqrt((1 / J + n2 / n1) * var(d, ddof=1))`` with J = len(d) = k r, two-sided p from
    Student's t with J - 1 degrees of freedom; the interval is ``mean(d) +- t_{(1+level)/2, J-1} *
    sqrt((1 / J + n2 / n1) * var(d))``. ``test_train_ratio`` is n2 / n1. ``t`` and ``p`` are NaN (and
    ``reason`` says why) with fewer than two differences, an unknown ratio, or no spread in ``d``.
    """
    from scipy.stats import t as student_t

    d = np.asarray(d, float)
    J = len(d)
    mean = float(d.mean()) if J else math.nan
    if J < 2:
        return CorrectedT(mean, math.nan, math.nan, math.nan, max(J - 1, 0), math.nan, "n too small")
    if not (test_train_ratio > 0 and math.isfinite(test_train_ratio)):
        return CorrectedT(mean, math.nan, math.nan, math.nan, J - 1, math.nan, "n_test/n_train unknown")
    se = math.sqrt((1.0 / J + test_train_ratio) * float(d.var(ddof=1)))
    half = float(student_t.ppf(0.5 + level / 2, J - 1)) * se
    if se == 0.0:
        why = "all differences zero" if mean == 0.0 else "all differences equal"
        return CorrectedT(mean, mean, mean, math.nan, J - 1, math.nan, why)
    t = mean / se
    p = float(2.0 * student_t.sf(abs(t), J - 1))
    return CorrectedT(mean, mean - half, mean + half, t, J - 1, p)


def repetition_means(d: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Mean paired difference per repetition (seed), in seed order."""
    frame = pd.DataFrame({"seed": np.asarray(seeds), "d": np.asarray(d, float)})
    return frame.groupby("seed", sort=True)["d"].mean().to_numpy(float)


def repetition_wilcoxon(d: np.ndarray, seeds: np.ndarray) -> tuple[float, float, int, str]:
    """Two-sided Wilcoxon signed-rank test on the per-seed mean differences -> (statistic, p, r, reason)."""
    means = repetition_means(d, seeds)
    stat, p, reason = wilcoxon_test(means, np.zeros_like(means))
    return stat, p, len(means), reason


@dataclass(frozen=True)
class CVComparison:
    """``method`` vs ``reference`` on ``metric`` over repeated cross-validation.

    ``n``: matched (seed, fold) pairs; ``reps``: repetitions (seeds) among them; ``ratio``: the n2 / n1
    used by the corrected t-test; ``t``: :class:`CorrectedT`; ``p_wilcoxon``: Wilcoxon on per-seed means.
    """

    method: str
    reference: str
    metric: str
    n: int
    reps: int
    ratio: float
    t: CorrectedT
    wilcoxon_stat: float
    p_wilcoxon: float
    reason_wilcoxon: str = ""

    @property
    def mean_diff(self) -> float:
        return self.t.mean

    @property
    def p(self) -> float:
        """The p-value the report leads with: the corrected t-test's."""
        return self.t.p

    @property
    def ok(self) -> bool:
        return not math.isnan(self.t.p)

    def describe_p(self) -> str:
        return p_text(self.t.p) if self.ok else self.t.reason

    def describe_wilcoxon(self) -> str:
        return p_text(self.p_wilcoxon) if not math.isnan(self.p_wilcoxon) else self.reason_wilcoxon


def p_text(p: float) -> str:
    """``p=0.044`` or ``p<0.001``."""
    text = format_p(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def paired_frame(summary: pd.DataFrame, method: str, reference: str, metric: str) -> pd.DataFrame:
    """``seed, fold, d`` for every (seed, fold) where both methods have a value, sorted by (seed, fold)."""
    merged = _matched(summary, method, reference, metric)
    merged["d"] = merged[f"{metric}_m"].astype(float) - merged[f"{metric}_r"].astype(float)
    return merged[[*PAIR_KEYS, "d"]].reset_index(drop=True)


def cv_compare(summary: pd.DataFrame, method: str, reference: str, metric: str, ratio: float) -> CVComparison:
    """Corrected t-test (with interval) and per-repetition Wilcoxon of ``method`` against ``reference``."""
    pairs = paired_frame(summary, method, reference, metric)
    d, seeds = pairs["d"].to_numpy(float), pairs["seed"].to_numpy()
    stat, p_w, reps, why = repetition_wilcoxon(d, seeds) if len(d) else (math.nan, math.nan, 0, "n too small")
    return CVComparison(
        method=method,
        reference=reference,
        metric=metric,
        n=len(d),
        reps=reps,
        ratio=ratio,
        t=corrected_t_test(d, ratio),
        wilcoxon_stat=stat,
        p_wilcoxon=p_w,
        reason_wilcoxon=why,
    )


def size_ratio(sizes: pd.DataFrame) -> float:
    """n2 / n1 from per-fold sizes (columns ``n_train``, ``n_test``): mean test over mean training size.

    ``n_train`` counts every sample the fold's models learned from or were selected on (training and
    validation subjects): the learning algorithm of the comparison includes model selection.
    """
    if sizes.empty:
        return math.nan
    return float(sizes["n_test"].mean() / sizes["n_train"].mean())
