"""Write results/README.md: one table over the published settings, with paired tests, from summary.csv files.

    python results/summarize.py [RUNS_DIR]      (default runs/published, as results/make_results.sh writes)

Each setting's full report (tables, Wilcoxon tests, sentences, figures) is results/<setting>/report.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mtpkdot.report.stats import paired_test
from mtpkdot.report.tables import aggregate, format_mean_std, markdown_table, read_summary

SETTINGS = {
    "sew": "SEW: EDA (privileged) stronger than video",
    "wes": "WES: video stronger than EDA (privileged)",
    "lowdata": "SEW, 8 training subjects per fold",
    "finetune": "SEW, student backbone fine-tuned",
}
METHODS = {
    "lower_bound": "lower_bound (video alone: the stage-1 video model)",
    "none": "none (student without distillation: T-Net hallucination only)",
    "cosine": "cosine",
    "mse": "mse",
    "kl": "kl",
    "pkdot": "pkdot",
    "mtpkdot": "mtpkdot",
    "teacher": "teacher (upper bound, video + EDA)",
}
METRIC = "accuracy"


def cell(summary, agg, method: str) -> str:
    row = agg[(agg["method"] == method) & (agg["metric"] == METRIC)]
    if row.empty:
        return "-"
    r = row.iloc[0]
    text = format_mean_std(r["mean"], r["std"], METRIC)
    marks = []
    present = set(summary["method"])
    # runs made before the lower_bound row existed compared with none; it is no lower bound (issue 12)
    low = "lower_bound" if "lower_bound" in present else "none"
    refs = (
        [(low, "L"), ("none", "N"), ("pkdot", "P")] if low == "lower_bound" else [(low, "L"), ("pkdot", "P")]
    )
    for ref, sign in refs:
        if method in (ref, "teacher", low) or ref not in present:
            continue
        t = paired_test(summary, method, ref, METRIC)
        if t.ok:
            marks.append(f"{sign} {t.mean_diff:+.1f}, p={t.p:.2f}")
    return text + (f" <sub>({'; '.join(marks)})</sub>" if marks else "")


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/published")
    found = {s: runs / s / "summary.csv" for s in SETTINGS if (runs / s / "summary.csv").is_file()}
    if not found:
        raise SystemExit(f"no summary.csv under {runs}/<setting>/: run results/make_results.sh first")
    summaries = {s: read_summary(p) for s, p in found.items()}
    aggs = {s: aggregate(df) for s, df in summaries.items()}
    n = {s: len(df[["seed", "fold"]].drop_duplicates()) for s, df in summaries.items()}
    headers = ["method"] + [f"{s} (n={n[s]})" for s in found]
    rows = [[label] + [cell(summaries[s], aggs[s], m) for s in found] for m, label in METHODS.items()]
    lines = [
        "# Published results (synthetic Biovid layout)",
        "",
        "Made by `bash results/make_results.sh` (the settings are described at its top), summarised by",
        "`python results/summarize.py`. Test accuracy (%) on held-out subjects, mean ± std over 5 subject-wise",
        "folds x 3 seeds (n = number of (seed, fold) results). In brackets: the mean paired difference and the",
        "two-sided Wilcoxon signed-rank p against the lower bound (L: `lower_bound`, the video model alone; in",
        "runs made before that row existed, `none`), against the student without distillation (N: `none`) and",
        "against PKDOT (P), pairs matched on (seed, fold).",
        "",
        "| setting | what it is |",
        "|---|---|",
        *[f"| {s} | {SETTINGS[s]} ([report]({s}/report.md)) |" for s in found],
        "",
        markdown_table(headers, rows),
        "",
    ]
    out = Path(__file__).with_name("README.md")
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
