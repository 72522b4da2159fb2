"""What the numbers say: methods with identical test results, a short table of each method's difference
from the lower bound and from the student without distillation, and the few sentences that matter.

The run directory keeps each stage's test metrics (``test.json``, collected into ``summary.csv``), not
its per-sample test predictions, so "identical" means identical test metrics in every (seed, fold):
with a discrete metric such as accuracy that is nearly always the same predictions, and the report
says which of the two it checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtpkdot import layout
from mtpkdot.report.stats import CVComparison
from mtpkdot.report.tables import (
    ALPHA,
    METRIC_LABELS,
    aggregate,
    comparisons,
    delta_ci,
    fmt,
    metric_columns,
    ordered_methods,
    short_name,
    table_metrics,
)

# the two references of the findings table, in its column order
TABLE_REFERENCES = (layout.LOWER_BOUND, "none")
# the rows that no distillation term trained: the reference rows and the student without distillation
UNDISTILLED = (*layout.REFERENCE_ROWS, "none")


@dataclass(frozen=True)
class SameResults:
    """Methods whose test metrics equal those of ``reference`` in each of ``cells`` (seed, fold) results."""

    reference: str
    methods: tuple[str, ...]
    cells: int

    def __contains__(self, method: object) -> bool:
        return method == self.reference or method in self.methods


def _results_by_cell(summary: pd.DataFrame, method: str, metrics: list[str]) -> pd.DataFrame:
    rows = summary[summary["method"] == method]
    return rows.set_index(["seed", "fold"])[metrics].sort_index()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if not a.index.equals(b.index):
        return False
    return bool(np.array_equal(a.to_numpy(float), b.to_numpy(float), equal_nan=True))


def identical_results(summary: pd.DataFrame) -> list[SameResults]:
    """Groups of methods with the same value of every metric in every (seed, fold), each led by the
    method that comes first in the report's order (``none`` before the students)."""
    metrics = metric_columns(summary)
    if not metrics or summary.empty:
        return []
    groups: list[tuple[str, pd.DataFrame, list[str]]] = []
    for method in ordered_methods(summary):
        cells = _results_by_cell(summary, method, metrics)
        lead = next((g for g in groups if _same(g[1], cells)), None)
        if lead is None:
            groups.append((method, cells, []))
        else:
            lead[2].append(method)
    return [SameResults(ref, tuple(others), len(cells)) for ref, cells, others in groups if others]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _settings_hint(cfg: dict[str, Any]) -> str:
    """The student settings under which a distillation term moves no prediction."""
    student = cfg.get("student", {}) if isinstance(cfg.get("student"), dict) else {}
    parts = []
    if not student.get("finetune_backbone", False):
        parts.append("a head on frozen features")
    if "lr" in student:
        parts.append(f"a small learning rate (`student.lr` = {student['lr']:g})")
    else:
        parts.append("a small learning rate")
    if "epochs" in student:
        parts.append(f"few epochs (`student.epochs` = {student['epochs']})")
    else:
        parts.append("few epochs")
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def likely_reason(group: SameResults, cfg: dict[str, Any]) -> str:
    """Why a group of methods ends with the same test results, from which rows it holds."""
    members = [group.reference, *group.methods]
    students = [m for m in members if m not in UNDISTILLED]
    if "none" in members and students:
        return f"the distillation term changed no test result ({_settings_hint(cfg)})"
    if layout.LOWER_BOUND in members and "none" in members:
        return "the T-Net's hallucinated privileged features changed no test result"
    if layout.TEACHER in members:
        return "the privileged modality changed no test result"
    return f"their distillation terms led to the same test results ({_settings_hint(cfg)})"


def same_results_sentence(group: SameResults, cfg: dict[str, Any]) -> str:
    return (
        f"{_join(list(group.methods))} made the same test results as {group.reference} in every fold "
        f"({group.cells} (seed, fold) results; identical metrics, compared on every metric of "
        f"summary.csv, since the run directory keeps no per-sample test predictions): "
        f"{likely_reason(group, cfg)}."
    )


def _group_of(method: str, groups: list[SameResults]) -> SameResults | None:
    return next((g for g in groups if method in g), None)


def _identical(method: str, ref: str, groups: list[SameResults]) -> bool:
    group = _group_of(method, groups)
    return group is not None and ref in group


def _cells(test: CVComparison | None, metric: str, identical: bool) -> list[str]:
    """The Δ [95 % CI] cell and the corrected p cell of one comparison."""
    if identical:
        return ["identical", "-"]
    if test is None:
        return ["-", "-"]
    if not test.ok:
        return [delta_ci(test, metric), test.t.reason]
    star = " *" if test.p < ALPHA else ""
    return [delta_ci(test, metric), test.describe_p() + star]


def findings_table(
    summary: pd.DataFrame, ratio: float | None = None, groups: list[SameResults] | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per method (and metric, for regression): its mean, then its difference from the lower
    bound and from the student without distillation with the 95 % interval and the corrected p."""
    groups = identical_results(summary) if groups is None else groups
    tests = comparisons(summary, ratio)
    present = set(summary["method"])
    refs = [r for r in TABLE_REFERENCES if r in present]
    metrics = table_metrics(summary)
    agg = aggregate(summary).set_index(["method", "metric"])
    headers = ["Method", *(["Metric"] if len(metrics) > 1 else []), "Mean"]
    for ref in refs:
        headers += [f"Δ vs {ref} [95 % CI]", "p"]
    rows = []
    for metric in metrics:
        for method in ordered_methods(summary):
            if refs and method == refs[0]:
                continue  # the first reference's row would hold no comparison
            row = [method, *([METRIC_LABELS.get(metric, metric)] if len(metrics) > 1 else [])]
            row.append(fmt(agg.loc[(method, metric), "mean"], metric))
            for ref in refs:
                if method == ref:
                    row += ["-", "-"]
                    continue
                test = tests.get((method, ref, metric))
                row += _cells(test, metric, _identical(method, ref, groups))
            rows.append(row)
    return headers, rows


def _significance(test: CVComparison) -> str:
    if not test.ok:
        return f"no test possible: {test.t.reason}"
    level = "significant" if test.p < ALPHA else "not significant"
    return f"{test.describe_p()}, {level} at the {ALPHA:g} level"


def _vs(m: str, ref: str, metric: str, tests: dict, groups: list[SameResults]) -> str:
    if _identical(m, ref, groups):
        return f"identical to {short_name(ref)}"
    test = tests[(m, ref, metric)]
    return f"Δ {delta_ci(test, metric)} vs {short_name(ref)} ({_significance(test)})"


def _best_student(mean: dict[str, float], students: list[str]) -> str | None:
    if not students:
        return None
    return max(students, key=lambda m: -np.inf if math.isnan(mean[m]) else mean[m])


def _best_sentence(
    label: str, metric: str, mean: dict[str, float], best: str, tests: dict, groups: list[SameResults]
) -> str:
    """The best student, the share of the gap to the teacher it closes, its differences from the references."""
    text = f"{label}: the best student, {short_name(best)} ({fmt(mean[best], metric)})"
    low = next((r for r in TABLE_REFERENCES if r in mean), None)
    up = mean.get(layout.TEACHER, math.nan)
    if low is not None and up > mean[low]:
        share = 100.0 * (mean[best] - mean[low]) / (up - mean[low])
        closes = f"closes {share:.0f} %" if share > 0 else "closes none"
        text += (
            f", {closes} of the gap between {short_name(low)} ({fmt(mean[low], metric)}) "
            f"and the upper bound ({fmt(up, metric)})"
        )
    refs = [r for r in TABLE_REFERENCES if r in mean]
    if refs:
        text += "; " + ", ".join(_vs(best, r, metric, tests, groups) for r in refs)
    return text + "."


def _teacher_sentence(label: str, metric: str, mean: dict[str, float]) -> list[str]:
    """Said when the teacher is not above the lowest reference: there was nothing to transfer."""
    low = next((r for r in TABLE_REFERENCES if r in mean), None)
    if layout.TEACHER not in mean or low is None or mean[layout.TEACHER] > mean[low]:
        return []
    return [
        f"{label}: the multimodal teacher ({fmt(mean[layout.TEACHER], metric)}) is not above "
        f"{short_name(low)} ({fmt(mean[low], metric)}), so the privileged modality had no measurable "
        "knowledge to transfer here."
    ]


def _mtpkdot_sentence(label: str, metric: str, mean: dict[str, float], tests: dict, groups) -> list[str]:
    if not {"mtpkdot", "pkdot"} <= set(mean):
        return []
    nums = f"{fmt(mean['mtpkdot'], metric)} vs {fmt(mean['pkdot'], metric)}"
    if _identical("mtpkdot", "pkdot", groups):
        return [f"{label}: MT-PKDOT and PKDOT made the same test results ({nums})."]
    # "is above", not "beats": whether the difference means anything is said by the test after it
    verb = "is above" if mean["mtpkdot"] > mean["pkdot"] else "does not beat"
    t = tests[("mtpkdot", "pkdot", metric)]
    return [
        f"{label}: MT-PKDOT {verb} PKDOT on this run ({nums}; Δ {delta_ci(t, metric)}, {_significance(t)})."
    ]


def findings_sentences(
    summary: pd.DataFrame,
    ratio: float | None = None,
    groups: list[SameResults] | None = None,
) -> list[str]:
    """Per table metric: the best student against the references and the share of the gap to the
    teacher it closes, MT-PKDOT against PKDOT; then the methods that made identical test results
    (their likely reason is given once, under the results table: :func:`same_results_sentence`)."""
    groups = identical_results(summary) if groups is None else groups
    agg = aggregate(summary)
    tests = comparisons(summary, ratio)
    methods = ordered_methods(summary)
    students = [m for m in methods if m not in UNDISTILLED]
    out: list[str] = []
    if layout.LOWER_BOUND not in set(methods):
        out.append(
            "This run has no `lower_bound` row (prevalent modalities alone), so no method can be compared "
            "with the true lower bound; `none` is a student with the T-Net's hallucinated privileged "
            "features, itself trained with the privileged modality."
        )
    for metric in table_metrics(summary):
        label = METRIC_LABELS.get(metric, metric)
        sub = agg[agg["metric"] == metric].set_index("method")["mean"]
        mean = {m: float(sub[m]) for m in methods}
        best = _best_student(mean, students)
        if best is not None:
            out.append(_best_sentence(label, metric, mean, best, tests, groups))
        out += _teacher_sentence(label, metric, mean)
        out += _mtpkdot_sentence(label, metric, mean, tests, groups)
    out += [
        f"{_join(list(g.methods))} made the same test results as {g.reference} in every fold (see Results)."
        for g in groups
    ]
    return out
