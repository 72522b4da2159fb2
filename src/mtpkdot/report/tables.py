"""Results tables in the form of the paper's Tables II-VII and their markdown form (what the numbers
say in words: :mod:`mtpkdot.report.findings`).

Rows: the lower bound (``lower_bound``: the prevalent modalities alone, no T-Net, no distillation),
the student without distillation (``none``: prevalent modalities plus the T-Net's hallucinated
privileged features; the T-Net was trained with the privileged modality, so this row is not a lower
bound), the baselines (``cosine``, ``mse``, ``kl``), PKDOT, MT-PKDOT, the upper bound (``teacher``).
Runs made before ``lower_bound`` existed have no such row; their reports say so. Cells are mean +-
sample standard deviation (ddof=1) over every (seed, fold) result of ``summary.csv``; with a single
result the std is undefined and printed ``n/a``. Numbers are written with a fixed format per metric
(:data:`DECIMALS`) so that the markdown tables parse back (:func:`parse_markdown_tables`,
:func:`parse_mean_std`). Paired comparisons: :mod:`mtpkdot.report.stats`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

import mtpkdot.distill.methods  # noqa: F401  (the built-in methods declare their labels and order)
from mtpkdot import layout
from mtpkdot.registry import METHODS
from mtpkdot.report.stats import CVComparison, cv_compare

# every method is compared with these, when the run has them
REFERENCES = ("lower_bound", "none", "pkdot")
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


def label(method: str) -> str:
    """A row's description in the results table: a reference row's or the method's declared label."""
    if method in layout.REFERENCE_ROWS:
        return layout.REFERENCE_ROWS[method].label
    return (METHODS.get(method).label if method in METHODS else "") or method


def short_name(method: str) -> str:
    """A row's name in the report's sentences."""
    if method in layout.REFERENCE_ROWS:
        return layout.REFERENCE_ROWS[method].short_name
    return (METHODS.get(method).short_name if method in METHODS else "") or method


def known_rows() -> list[str]:
    """Every row a run can have, in table order: the reference rows and the registered methods."""
    names = [*layout.REFERENCE_ROWS, *METHODS.names()]
    return sorted(names, key=lambda m: layout.row_order(m))


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
    """The rows of ``summary`` in table order; a name neither a reference row nor a registered method
    (a method of an older run) goes before the teacher, in the order of ``summary``."""
    present = list(dict.fromkeys(summary["method"]))
    known = sorted((m for m in present if layout.row_order(m) is not None), key=layout.row_order)
    other = [m for m in present if layout.row_order(m) is None]
    tail = [layout.TEACHER] if layout.TEACHER in known else []
    return [m for m in known if m != layout.TEACHER] + other + tail


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
        cells = [method, label(method)]
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


def design_ratio(summary: pd.DataFrame) -> float:
    """n2 / n1 when the run's split sizes are unknown: 1 / (K - 1) for K folds per seed (NaN for K < 2).

    Exact for K equal folds when every non-test sample counts as training (:func:`stats.size_ratio`).
    """
    k = int(summary.groupby("seed")["fold"].nunique().max()) if not summary.empty else 0
    return 1.0 / (k - 1) if k > 1 else math.nan


def comparisons(
    summary: pd.DataFrame, ratio: float | None = None
) -> dict[tuple[str, str, str], CVComparison]:
    """Every method against each reference of :data:`REFERENCES` the run has, per table metric.

    ``ratio`` is the n2 / n1 of the corrected t-test (default: :func:`design_ratio`).
    """
    ratio = design_ratio(summary) if ratio is None else ratio
    present = set(summary["method"])
    out = {}
    for metric in table_metrics(summary):
        for ref in REFERENCES:
            if ref not in present:
                continue
            earlier = REFERENCES[: REFERENCES.index(ref) + 1]  # ref vs an earlier one is already there
            for method in ordered_methods(summary):
                if method not in earlier:
                    out[(method, ref, metric)] = cv_compare(summary, method, ref, metric, ratio)
    return out


def _signed(value: float, metric: str) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{decimals(metric)}f}"


def delta_ci(test: CVComparison, metric: str) -> str:
    """``+1.00 [-0.50, +2.50]``: the mean paired difference and its 95 % interval."""
    t = test.t
    if math.isnan(t.ci_low):
        return f"{_signed(t.mean, metric)} [n/a]"
    return f"{_signed(t.mean, metric)} [{_signed(t.ci_low, metric)}, {_signed(t.ci_high, metric)}]"


def stats_table(summary: pd.DataFrame, ratio: float | None = None) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the statistics table: one row per (reference, method, metric).

    Δ is the mean paired difference (method minus reference) with its 95 % interval from the
    corrected variance; then the corrected t-test's p, the Wilcoxon p on per-seed means, the pairs.
    """
    tests = comparisons(summary, ratio)
    headers = [
        "Method",
        "Reference",
        "Metric",
        "Δ [95 % CI]",
        "Corrected t-test",
        "Wilcoxon (seed means)",
        "Pairs (seeds)",
    ]
    rows = []
    for ref in REFERENCES:
        for metric in table_metrics(summary):
            for method in ordered_methods(summary):
                test = tests.get((method, ref, metric))
                if test is None:
                    continue
                rows.append(
                    [
                        method,
                        ref,
                        METRIC_LABELS.get(metric, metric),
                        delta_ci(test, metric),
                        test.describe_p(),
                        test.describe_wilcoxon(),
                        f"{test.n} ({test.reps})",
                    ]
                )
    return headers, rows


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
    present = set(summary["method"])
    if "lower_bound" in present:
        out.append("lower_bound = prevalent modalities alone (no T-Net, no distillation)")
    if "none" in present:
        out.append(
            "none = student without distillation (T-Net hallucination only); teacher = multimodal (upper bound)"
        )
    return "\n".join(out)
