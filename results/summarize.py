"""Write results/README.md: one table per published setting, with the paired tests of repeated CV.

    python results/summarize.py [RESULTS_DIR]      (default: results, as results/make_results.sh fills it)

Reads ``<RESULTS_DIR>/<setting>/summary.csv`` of every setting of ``results/make_results.sh`` that has
one. Per setting: each method's mean +- std over the (seed, fold) results, and against the lower bound
(L), the student without distillation (N) and PKDOT (P) the mean paired difference with its 95 %
interval and the p of the corrected resampled t-test (Nadeau & Bengio 2003; the reports' leading test,
see docs/pipeline.md). n2/n1 is the design ratio 1/(K-1): exact here, since every setting has equal
subject folds and counts validation subjects as training. Then, over settings: the gap closed by the
best student, and in the null world (``shared0``) the share of comparisons that reach p < 0.05.
Each setting's full report (every test, sentences, figures) is results/<setting>/report.md.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtpkdot.report.stats import CVComparison
from mtpkdot.report.tables import (
    ALPHA,
    aggregate,
    comparisons,
    decimals,
    fmt,
    format_mean_std,
    markdown_table,
    ordered_methods,
    read_summary,
    table_metrics,
)

SETTINGS = {
    "shared0": "known-answer world, shared 0: EDA independent of the video given the label (truth: no gain)",
    "shared1": "known-answer world, shared 1: the video faintly shows what the EDA teacher encodes",
    "shared1_finetune": "shared1, the student's video backbone fine-tuned",
    "shared1_crossfit": "shared1, cross-fitted teacher-side features (K = 3)",
    "wes": "WES: video stronger than EDA (privileged)",
    "lowdata": "SEW, 8 training subjects per fold",
    "affwild2": "Affwild2-like: valence/arousal, video + audio (privileged), joint cross-attention",
    "physio": "physiological student: EMG (prevalent), video (privileged), reverse T-Net",
}
REFS = {"lower_bound": "L", "none": "N", "pkdot": "P"}
DISTILLED = ("cosine", "mse", "kl", "pkdot", "mtpkdot")


@dataclass
class Setting:
    """One setting's summary.csv with its aggregate and every paired test, computed once."""

    summary: pd.DataFrame
    agg: pd.DataFrame = field(init=False)
    tests: dict[tuple[str, str, str], CVComparison] = field(init=False)

    def __post_init__(self) -> None:
        self.agg, self.tests = aggregate(self.summary), comparisons(self.summary)


def diff(value: float, metric: str) -> str:
    """A paired difference: one decimal fewer than the table's means."""
    return f"{value:+.{decimals(metric) - 1}f}"


def versus(test: CVComparison | None, metric: str) -> str:
    if test is None:
        return "-"
    if not test.ok:
        return test.t.reason  # e.g. "all differences zero": identical results in every (seed, fold)
    t = test.t
    return (
        f"{diff(t.mean, metric)} [{diff(t.ci_low, metric)}, {diff(t.ci_high, metric)}], {test.describe_p()}"
    )


def setting_table(st: Setting) -> str:
    summary, tests, agg, blocks = st.summary, st.tests, st.agg, []
    present = set(summary["method"])
    refs = [r for r in REFS if r in present]
    for metric in table_metrics(summary):
        headers = ["method", f"{metric} (n)"] + [f"vs {r} ({REFS[r]}): Δ [95 % CI], p" for r in refs]
        rows = []
        for m in ordered_methods(summary):
            r = agg[(agg["method"] == m) & (agg["metric"] == metric)].iloc[0]
            cells = [m, f"{format_mean_std(r['mean'], r['std'], metric)} ({int(r['n'])})"]
            cells += [versus(tests.get((m, ref, metric)), metric) for ref in refs]
            rows.append(cells)
        blocks.append(markdown_table(headers, rows))
    return "\n\n".join(blocks)


def headline_rows(name: str, st: Setting) -> list[list[str]]:
    """One row per metric of a setting: the lower bound, then none, PKDOT, MT-PKDOT, the best distilled
    student and the teacher as mean (Δ vs lower bound, corrected p)."""
    tests, agg, rows = st.tests, st.agg, []
    for metric in table_metrics(st.summary):
        mean = agg[agg["metric"] == metric].set_index("method")["mean"]
        best = max((m for m in DISTILLED if m in mean.index), key=lambda m: mean[m], default=None)

        def cell(m: str | None, mean=mean, metric=metric) -> str:
            if m is None or m not in mean.index:
                return "-"
            t = tests.get((m, "lower_bound", metric))
            vs = f" ({diff(t.t.mean, metric)}, {t.describe_p()})" if t is not None and t.ok else ""
            return f"{fmt(mean[m], metric)}{vs}"

        label = name if metric == "accuracy" else f"{name} ({metric})"
        best_cell = f"{best}: {cell(best)}" if best else "-"
        rows.append(
            [
                label,
                cell("lower_bound"),
                cell("none"),
                cell("pkdot"),
                cell("mtpkdot"),
                best_cell,
                cell("teacher"),
            ]
        )
    return rows


HEADLINE = ["setting", "lower_bound", "none", "pkdot", "mtpkdot", "best distilled", "teacher"]


def gap_closed(st: Setting) -> list[str]:
    """(best student - lower_bound) / (teacher - lower_bound) per metric, the best student by mean; a
    ratio over a teacher gap that is not significant is flagged, it means little."""
    agg, out, tests = st.agg, [], st.tests
    for metric in table_metrics(st.summary):
        mean = agg[agg["metric"] == metric].set_index("method")["mean"]
        if not {"lower_bound", "teacher"} <= set(mean.index):
            continue
        students = [m for m in ("none", *DISTILLED) if m in mean.index]
        best = max(students, key=lambda m: mean[m])
        span = mean["teacher"] - mean["lower_bound"]
        share = (mean[best] - mean["lower_bound"]) / span if span else math.nan
        out.append(
            f"{metric}: best student {best} {fmt(mean[best], metric)}, lower bound "
            f"{fmt(mean['lower_bound'], metric)}, teacher {fmt(mean['teacher'], metric)}: gap closed "
            f"{share * 100:+.0f} %"
        )
        t = tests.get(("teacher", "lower_bound", metric))
        if t is not None and t.ok and not t.p < ALPHA:
            out[-1] += f" (teacher vs lower bound not significant, {t.describe_p()}: the ratio means little)"
    return out


def false_positives(st: Setting) -> str:
    """How many comparisons of a privileged-information student reach p < ALPHA (null world)."""
    tests = [t for (m, ref, _), t in st.tests.items() if m in ("none", *DISTILLED) and ref in REFS and t.ok]
    t_hits = sum(t.p < ALPHA for t in tests)
    w_hits = sum((not math.isnan(t.p_wilcoxon)) and t.p_wilcoxon < ALPHA for t in tests)
    return (
        f"{t_hits} of {len(tests)} comparisons reach p < {ALPHA:g} with the corrected t-test "
        f"({t_hits / len(tests) * 100:.0f} %); Wilcoxon on the 3 seed means: {w_hits} of {len(tests)} "
        "(its smallest possible two-sided p with 3 seeds is 0.25)"
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    found = {s: root / s / "summary.csv" for s in SETTINGS if (root / s / "summary.csv").is_file()}
    if not found:
        sys.exit(f"no <setting>/summary.csv under {root} (settings: {', '.join(SETTINGS)})")
    parts = [
        "# Published results (synthetic data)\n",
        "Made by `bash results/make_results.sh SETTING` (settings and sizes at its top), summarised by "
        "`python results/summarize.py`. Mean ± std over 5 subject-wise folds x 3 seeds (seed s = partition "
        "s: repeated cross-validation; n = (seed, fold) results). Against the lower bound (L: prevalent "
        "modalities alone), the student without distillation (N: T-Net hallucination only) and PKDOT "
        "(P): the mean paired difference, its 95 % interval and the p of the corrected resampled t-test "
        "(Nadeau & Bengio 2003; n2/n1 = 1/4, the design ratio, exact for these equal folds). Every "
        "student of a (seed, fold) shares its initial weights and batch order (common random numbers).\n",
    ]
    summaries = {s: Setting(read_summary(p)) for s, p in found.items()}
    rows = [r for name, st in summaries.items() for r in headline_rows(name, st)]
    parts.append(
        "## Overview\n\nMean over the 15 (seed, fold) results; in brackets the mean paired difference to "
        "the lower bound and the corrected t-test's p.\n\n" + markdown_table(HEADLINE, rows) + "\n"
    )
    for name, st in summaries.items():
        parts.append(f"## {name}: {SETTINGS[name]}\n\n[report]({name}/report.md)\n")
        parts.append(setting_table(st) + "\n")
        gaps = gap_closed(st)
        if gaps:
            parts.append(
                "Gap closed, (best student - lower bound) / (teacher - lower bound): "
                + "; ".join(gaps)
                + "\n"
            )
    if "shared0" in summaries:
        parts.append(
            "## False positives in the null world (shared0)\n\n"
            + false_positives(summaries["shared0"])
            + "\n"
        )
    if (root / "sweep" / "sweep_report.md").is_file():
        parts.append(
            "## sweep: student batch size x anchors x centroid term (Fig. 7, Table VI)\n\n"
            "[sweep report](sweep/sweep_report.md): MT-PKDOT and `none` per grid point on shared1's data, "
            "with the corrected t-test of the centroid ablation.\n"
        )
    text = "\n".join(parts)
    (root / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
