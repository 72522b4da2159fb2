"""Paired statistics for the results tables: Wilcoxon signed-rank tests over (seed, fold) pairs.

The paper reports means only; we add a paired test because every method is trained on the same folds
and seeds, so the per-fold differences are the honest unit of comparison. The test is
``scipy.stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")``: pairs with a zero
difference are dropped (Wilcoxon's original treatment) and the hypothesis is two-sided (a method may
be worse as well as better than its reference).
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


@dataclass(frozen=True)
class PairedTest:
    """Result of one paired comparison ``method`` vs ``reference`` on one metric.

    ``n`` is the number of matched (seed, fold) pairs, ``n_nonzero`` those with a non-zero difference
    (the ones the test uses). ``p`` and ``statistic`` are NaN when the test cannot say anything
    (``reason`` then says why, e.g. "n too small").
    """

    method: str
    reference: str
    metric: str
    n: int
    n_nonzero: int
    mean_diff: float
    statistic: float
    p: float
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not math.isnan(self.p)

    def describe_p(self) -> str:
        """Short text for tables and sentences: ``p=0.044`` or the reason there is no p."""
        if not self.ok:
            return self.reason
        return f"p={format_p(self.p)}"


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
    cols = [*PAIR_KEYS, metric]
    a = summary.loc[summary["method"] == method, cols].dropna()
    b = summary.loc[summary["method"] == reference, cols].dropna()
    for name, frame in ((method, a), (reference, b)):
        if frame.duplicated(list(PAIR_KEYS)).any():
            raise ValueError(f"summary.csv has several rows for method {name!r} with the same (seed, fold)")
    merged = a.merge(b, on=list(PAIR_KEYS), suffixes=("_m", "_r")).sort_values(list(PAIR_KEYS))
    return merged[f"{metric}_m"].to_numpy(float), merged[f"{metric}_r"].to_numpy(float)


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


def paired_test(summary: pd.DataFrame, method: str, reference: str, metric: str) -> PairedTest:
    """Wilcoxon test of ``method`` against ``reference`` on ``metric``, pairs matched on (seed, fold)."""
    x, y = paired_values(summary, method, reference, metric)
    d = x - y
    stat, p, reason = wilcoxon_test(x, y)
    return PairedTest(
        method=method,
        reference=reference,
        metric=metric,
        n=len(d),
        n_nonzero=int(np.count_nonzero(d)),
        mean_diff=float(d.mean()) if len(d) else math.nan,
        statistic=stat,
        p=p,
        reason=reason,
    )


def min_reachable_p(n_nonzero: int) -> float:
    """Smallest two-sided exact p a signed-rank test can give with ``n_nonzero`` pairs (2 / 2^n)."""
    return min(1.0, 2.0 / 2**n_nonzero) if n_nonzero > 0 else 1.0
