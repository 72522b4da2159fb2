"""Results tables in the form of the paper's Tables II-VII, their markdown form, and the sentences
that state in words what the numbers say.

Rows follow the paper: lower bound (``none``), the baselines (``cosine``, ``mse``, ``kl``), PKDOT,
MT-PKDOT, upper bound (``teacher``). Cells are mean +- sample standard deviation (ddof=1) over every
(seed, fold) result of ``summary.csv``; with a single result the std is undefined and printed ``n/a``.
Numbers are written with a fixed format per metric (:data:`DECIMALS`) so that the markdown tables
parse back (:func:`parse_markdown_tables`, :func:`parse_mean_std`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mtpkdot import layout
from mtpkdot.report.stats import PairedTest, min_reachable_p, paired_test

METHOD_ORDER = layout.METHOD_ORDER
METHOD_LABELS = {
    "none": "Lower bound (prevalent only, no distillation)",
    "cosine": "Cosine feature PKD (Aslam et al., CVPRw'23)",
    "mse": "MSE feature PKD (Makantasis et al., TAC'23)",
    "kl": "KL on softened logits (Makantasis et al., TAC'23)",
    "pkdot": "PKDOT (single joint teacher, OT)",
    "mtpkdot": "MT-PKDOT (multi-teacher, OT + centroid)",
    "teacher": "Upper bound (multimodal teacher)",
}
SHORT_NAMES = {
    "none": "the lower bound",
    "cosine": "Cosine PKD",
    "mse": "MSE PKD",
    "kl": "KL PKD",
    "pkdot": "PKDOT",
    "mtpkdot": "MT-PKDOT",
    "teacher": "the multimodal teacher",
}
METRIC_LABELS = {
    "accuracy": "Accuracy (%)",
    "ccc_valence": "CCC valence",
    "ccc_arousal": "CCC arousal",
    "ccc_mean": "CCC mean",
}
DECIMALS = {"accuracy": 2, "ccc_valence": 3, "ccc_arousal": 3, "ccc_mean": 3}
KEY_COLUMNS = {"seed", "fold", "method", "n_test"}
ALPHA = 0.05
PM = "±"


def decimals(metric: str) -> int:
    return DECIMALS.get(metric, 3)


def fmt(value: float, metric: str) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{decimals(metric)}f}"


def short_name(method: str) -> str:
    return SHORT_NAMES.get(method, method)


def read_summary(path: str | Path) -> pd.DataFrame:
    """Read ``summary.csv`` (one row per seed, fold, method) and check its key columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (the run has not finished a single fold?)")
    df = pd.read_csv(path)
    missing = {"seed", "fold", "method"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {sorted(missing)}; expected seed, fold, method, <metrics>"
        )
    df["method"] = df["method"].astype(str)
    return df


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """Every numeric metric column of ``summary.csv`` (known ones first, in the paper's order)."""
    known = [m for m in METRIC_LABELS if m in summary.columns]
    other = [
        c
        for c in summary.columns
        if c not in KEY_COLUMNS and c not in known and pd.api.types.is_numeric_dtype(summary[c])
    ]
    return known + other


def table_metrics(summary: pd.DataFrame) -> list[str]:
    """The metrics shown in the results table: accuracy, or CCC valence and arousal (Table II)."""
    cols = metric_columns(summary)
    if "accuracy" in cols:
        return ["accuracy"]
    va = [c for c in ("ccc_valence", "ccc_arousal") if c in cols]
    return va or cols[:1]


def ordered_methods(summary: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(summary["method"]))
    known = [m for m in METHOD_ORDER if m in present and m != "teacher"]
    other = [m for m in present if m not in METHOD_ORDER]
    tail = ["teacher"] if "teacher" in present else []
    return known + other + tail


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """``results.csv``: one row per (method, metric) with mean, std (ddof=1, NaN for n=1) and n."""
    rows = []
    for method in ordered_methods(summary):
        sub = summary[summary["method"] == method]
        for metric in metric_columns(summary):
            values = sub[metric].dropna().to_numpy(float)
            n = len(values)
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "mean": float(values.mean()) if n else math.nan,
                    "std": float(values.std(ddof=1)) if n > 1 else math.nan,
                    "n": n,
                }
            )
    return pd.DataFrame(rows, columns=["method", "metric", "mean", "std", "n"])


def _lookup(agg: pd.DataFrame, method: str, metric: str) -> pd.Series | None:
    row = agg[(agg["method"] == method) & (agg["metric"] == metric)]
    return None if row.empty else row.iloc[0]


def format_mean_std(mean: float, std: float, metric: str) -> str:
    return f"{fmt(mean, metric)} {PM} {fmt(std, metric)}"


def results_table(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main results table (paper Tables II-V, VII layout)."""
    agg = aggregate(summary)
    metrics = table_metrics(summary)
    headers = ["Method", "Description", *[METRIC_LABELS.get(m, m) for m in metrics], "n"]
    rows = []
    for method in ordered_methods(summary):
        cells = [method, METHOD_LABELS.get(method, method)]
        counts = []
        for metric in metrics:
            r = _lookup(agg, method, metric)
            counts.append(int(r["n"]))
            cells.append(format_mean_std(r["mean"], r["std"], metric))
        if len(set(counts)) > 1:  # rare: a metric missing on some folds; give each cell its own n
            cells[2:] = [f"{c} (n={k})" for c, k in zip(cells[2:], counts, strict=True)]
        cells.append(str(counts[0]))
        rows.append(cells)
    return headers, rows


def comparisons(summary: pd.DataFrame) -> dict[tuple[str, str, str], PairedTest]:
    """Paired tests of every method against the lower bound and against PKDOT, per table metric."""
    present = set(summary["method"])
    out = {}
    for metric in table_metrics(summary):
        for method in ordered_methods(summary):
            for ref in ("none", "pkdot"):
                if ref in present and method != ref:
                    out[(method, ref, metric)] = paired_test(summary, method, ref, metric)
    return out


def _test_cell(test: PairedTest | None, metric: str) -> tuple[str, str]:
    if test is None:
        return "—", "—"
    diff = "n/a" if math.isnan(test.mean_diff) else f"{test.mean_diff:+.{decimals(metric)}f}"
    return diff, f"{test.describe_p()} (n={test.n})"


def stats_table(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the statistics table: mean paired difference, Wilcoxon p and pairs."""
    tests = comparisons(summary)
    headers = [
        "Method",
        "Metric",
        "Δ vs lower bound",
        "Wilcoxon vs lower bound",
        "Δ vs PKDOT",
        "Wilcoxon vs PKDOT",
    ]
    rows = []
    for metric in table_metrics(summary):
        for method in ordered_methods(summary):
            d0, p0 = _test_cell(tests.get((method, "none", metric)), metric)
            d1, p1 = _test_cell(tests.get((method, "pkdot", metric)), metric)
            rows.append([method, METRIC_LABELS.get(metric, metric), d0, p0, d1, p1])
    return headers, rows


def _significance(test: PairedTest) -> str:
    if not test.ok:
        return f"{test.reason}, {test.n} pair(s): no test possible"
    text = f"{test.describe_p()}, {test.n} pairs"
    if test.p < ALPHA:
        return text + f"; significant at the {ALPHA:g} level"
    if min_reachable_p(test.n_nonzero) >= ALPHA:
        return text + f"; with {test.n_nonzero} non-zero pairs no two-sided p below {ALPHA:g} is reachable"
    return text + f"; not significant at the {ALPHA:g} level"


def findings(summary: pd.DataFrame) -> list[str]:
    """Plain sentences generated from the numbers (what improves, what does not, how sure we are)."""
    agg = aggregate(summary)
    tests = comparisons(summary)
    present = set(summary["method"])
    methods = [m for m in ordered_methods(summary) if m not in ("none", "teacher")]
    out: list[str] = []
    for metric in table_metrics(summary):
        label = METRIC_LABELS.get(metric, metric)
        mean = {m: _lookup(agg, m, metric)["mean"] for m in ordered_methods(summary)}
        if "none" not in present:
            out.append(
                f"{label}: the lower bound (`none`) was not run, so no method can be compared with it."
            )
        else:
            for m in methods:
                t = tests[(m, "none", metric)]
                nums = f"{fmt(mean[m], metric)} vs {fmt(mean['none'], metric)}"
                if not mean[m] > mean["none"]:
                    out.append(
                        f"{label}: {short_name(m)} does not improve over the lower bound on this run "
                        f"({nums}; {_significance(t)})."
                    )
                else:
                    out.append(
                        f"{label}: {short_name(m)} is above the lower bound ({nums}; {_significance(t)})."
                    )
        if "mtpkdot" in present and "pkdot" in present:
            t = tests[("mtpkdot", "pkdot", metric)]
            nums = f"{fmt(mean['mtpkdot'], metric)} vs {fmt(mean['pkdot'], metric)}"
            # "is above", not "beats": whether the difference means anything is said by the test after it
            verb = "is above" if mean["mtpkdot"] > mean["pkdot"] else "does not beat"
            out.append(f"{label}: MT-PKDOT {verb} PKDOT on this run ({nums}; {_significance(t)}).")
        if "teacher" in present and "none" in present:
            up, low = mean["teacher"], mean["none"]
            if not up > low:
                out.append(
                    f"{label}: the multimodal teacher ({fmt(up, metric)}) is not above the lower bound "
                    f"({fmt(low, metric)}), so the privileged modality had no measurable knowledge to transfer here."
                )
            elif methods:
                best = max(methods, key=lambda m: -np.inf if math.isnan(mean[m]) else mean[m])
                share = 100.0 * (mean[best] - low) / (up - low)
                out.append(
                    f"{label}: the upper bound is {fmt(up, metric)}; the best student, {short_name(best)} "
                    f"({fmt(mean[best], metric)}), closes {share:.0f} % of the gap between lower and upper bound."
                )
    return out


# --- markdown tables and their parsing -------------------------------------------------------


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def parse_markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table in a markdown text, as a list of rows keyed by header."""
    tables: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    i = 0
    split = re.compile(r"(?<!\\)\|")
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            headers = [h.strip().replace("\\|", "|") for h in split.split(lines[i].strip())[1:-1]]
            i += 2
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip().replace("\\|", "|") for c in split.split(lines[i].strip())[1:-1]]
                rows.append(dict(zip(headers, cells, strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def parse_mean_std(cell: str) -> tuple[float, float]:
    """``"72.10 ± 1.35"`` -> (72.1, 1.35); ``n/a`` -> NaN; a trailing ``(n=..)`` is ignored."""
    m = re.fullmatch(rf"\s*(\S+)\s*{PM}\s*(\S+)(\s*\(n=\d+\))?\s*", cell)
    if not m:
        raise ValueError(f"not a 'mean {PM} std' cell: {cell!r}")
    return tuple(math.nan if v == "n/a" else float(v) for v in (m.group(1), m.group(2)))  # type: ignore[return-value]


def format_table(summary: pd.DataFrame) -> str:
    """Mean ± std over (seed, fold) per method, in the paper's order (lower bound first), as the
    report's tables print them (``mtpkdot.report.tables``: one place for aggregation and format)."""
    if summary.empty:
        return "(no finished results)"
    cols = metric_columns(summary)
    agg = aggregate(summary).set_index(["method", "metric"])
    header = ["method", "n"] + cols
    lines = []
    for m in ordered_methods(summary):
        cells = [m, str(int(agg.loc[(m, cols[0]), "n"]))]
        cells += [format_mean_std(agg.loc[(m, c), "mean"], agg.loc[(m, c), "std"], c) for c in cols]
        lines.append(cells)
    widths = [max(len(header[i]), *(len(r[i]) for r in lines)) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in lines]
    if "none" in set(summary["method"]):
        out.append("none = prevalent modality only (lower bound); teacher = multimodal (upper bound)")
    return "\n".join(out)
