"""The sweep report (Fig. 7: metric vs batch size x anchors; Table VI when centroid is on the grid).

Renders a sweep folder that ``mtpkdot.pipeline.sweep`` ran: ``sweep.csv``, ``sweep_report.md``,
``sweep_report.html`` and ``figures/fig7_sweep.png``. It reads the plan (``mtpkdot.sweep_plan``) and
each point's run directory; it never runs anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtpkdot import layout
from mtpkdot.atomic import atomic_write_csv, atomic_write_text, file_set
from mtpkdot.layout import RunLayout
from mtpkdot.sweep_plan import SETTING_KEYS, Point, read_plan


def sweep_table(out_dir: str | Path) -> pd.DataFrame:
    """``sweep.csv``: one row per (point, method) with the primary metric's mean, std (ddof=1) and n.

    Columns: point, batch_size, anchors, centroid, <other grid keys>, method, metric, mean, std, n, status.
    """
    from mtpkdot.report.tables import metric_columns, ordered_methods, read_summary

    out_dir = Path(out_dir)
    axes, points, _, _ = read_plan(out_dir)
    extra_axes = [a.name for a in axes if a.name not in SETTING_KEYS.values() and a.key not in SETTING_KEYS]
    rows = []
    for pt in points:
        base = {"point": pt.name, **pt.settings, **{k: pt.values.get(k) for k in extra_axes}}
        summary_path = RunLayout(out_dir).sweep_point(pt.name).summary
        status = pt.status
        if pt.status != "skipped" and summary_path.is_file():
            summary = read_summary(summary_path)
            metrics = metric_columns(summary)
            metric = (
                "accuracy" if "accuracy" in metrics else ("ccc_mean" if "ccc_mean" in metrics else metrics[0])
            )
            if status == "planned":
                status = "done"  # run outside this process (e.g. an earlier, resumed sweep)
            for method in ordered_methods(summary):
                v = summary.loc[summary["method"] == method, metric].dropna().to_numpy(float)
                rows.append(
                    {
                        **base,
                        "method": method,
                        "metric": metric,
                        "mean": float(v.mean()) if len(v) else math.nan,
                        "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                        "n": len(v),
                        "status": status,
                        "note": pt.reason,
                    }
                )
        else:
            if status != "skipped" and status != "failed":
                status = "missing"
            rows.append(
                {
                    **base,
                    "method": "",
                    "metric": "",
                    "mean": math.nan,
                    "std": math.nan,
                    "n": 0,
                    "status": status,
                    "note": pt.reason or ("no summary.csv" if status == "missing" else ""),
                }
            )
    return pd.DataFrame(rows)


def validation_score(point_dir: str | Path, method: str, metric: str) -> float:
    """Mean over (seed, fold) of ``method``'s validation ``metric`` at its selected epoch (NaN when none).

    The sweep picks its best point with this, never with the test results of ``summary.csv``: choosing
    a setting on the test folds is selection on the test set (the test fold is scored once, never chosen on).
    """
    values = []
    for test_json in RunLayout(point_dir).test_jsons(layout.student_stage(method)):
        stage = test_json.parent
        metrics_csv = stage / layout.METRICS
        if not (stage / layout.DONE).is_file() or not metrics_csv.is_file():
            continue
        best_epoch = int(json.loads(test_json.read_text())["best_epoch"])
        history = pd.read_csv(metrics_csv)
        row = history[history["epoch"] == best_epoch]
        if f"val_{metric}" in history.columns and len(row):
            values.append(float(row[f"val_{metric}"].iloc[0]))
    return float(sum(values) / len(values)) if values else math.nan


def _pairs_frame(out_dir: Path, points: Sequence[Point], method: str, metric: str) -> pd.DataFrame:
    """Per-(seed, fold) values of ``method`` in each point, with ``point`` as the paired-test 'method'."""
    from mtpkdot.report.tables import read_summary

    frames = []
    for pt in points:
        p = RunLayout(out_dir).sweep_point(pt.name).summary
        if pt.status == "skipped" or not p.is_file():
            continue
        s = read_summary(p)
        s = s.loc[s["method"] == method, ["seed", "fold", metric]].copy()
        s["method"] = pt.name
        frames.append(s)
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["seed", "fold", "method", metric])
    )


def centroid_blocks(out_dir: Path, table: pd.DataFrame, points: Sequence[Point]) -> list[Any]:
    """Table VI: MT-PKDOT with and without the centroid loss (Eq. 9), at each other grid setting."""
    from mtpkdot.report.document import Heading, Note, Table, Text
    from mtpkdot.report.stats import cv_compare
    from mtpkdot.report.tables import METRIC_LABELS, design_ratio, fmt, format_mean_std

    mt = table[(table["method"] == "mtpkdot") & (table["n"] > 0)]
    blocks: list[Any] = [Heading("Table VI: centroid loss ablation", 2)]
    if mt.empty:
        return [*blocks, Note("no MT-PKDOT results in the sweep points: Table VI skipped")]
    metric = str(mt["metric"].iloc[0])
    values = list(dict.fromkeys(mt["centroid"]))
    ref = "none" if "none" in values else values[0]
    others = [
        c
        for c in table.columns
        if c not in {"point", "centroid", "method", "metric", "mean", "std", "n", "status", "note"}
    ]
    pairs = _pairs_frame(out_dir, points, "mtpkdot", metric)
    headers = [
        *others,
        *[f"centroid={v}" for v in values],
        *[f"{v} - {ref}: Δ [95 % CI], corrected t-test" for v in values if v != ref],
    ]
    rows, sentences = [], []
    for key, grp in mt.groupby(others, sort=True, dropna=False) if others else [((), mt)]:
        key = key if isinstance(key, tuple) else (key,)
        by_c = {r["centroid"]: r for _, r in grp.iterrows()}
        cells = [str(k) for k in key]
        cells += [
            format_mean_std(by_c[v]["mean"], by_c[v]["std"], metric) if v in by_c else "—" for v in values
        ]
        for v in values:
            if v == ref:
                continue
            if v in by_c and ref in by_c:
                t = cv_compare(pairs, by_c[v]["point"], by_c[ref]["point"], metric, design_ratio(pairs))
                ci = f"[{t.t.ci_low:+.2f}, {t.t.ci_high:+.2f}]" if t.ok else "[n/a]"
                cells.append(f"{t.mean_diff:+.2f} {ci}, {t.describe_p()} (n={t.n})")
                better = by_c[v]["mean"] > by_c[ref]["mean"]
                where = ", ".join(f"{c}={k}" for c, k in zip(others, key, strict=True))
                sentences.append(
                    f"{where + ': ' if where else ''}MT-PKDOT with centroid `{v}` "
                    f"{'is above' if better else 'does not improve over'} centroid `{ref}` "
                    f"({fmt(by_c[v]['mean'], metric)} vs {fmt(by_c[ref]['mean'], metric)}; {t.describe_p()}, "
                    f"{t.n} pairs)."
                )
            else:
                cells.append("—")
        rows.append(cells)
    blocks += [
        Text(
            f"{METRIC_LABELS.get(metric, metric)} of MT-PKDOT, mean ± std over (seed, fold); between centroid "
            "settings, pairs matched on (seed, fold): the mean paired difference with its 95 % interval and the "
            "corrected resampled t-test for repeated cross-validation (Nadeau & Bengio 2003; n2/n1 = 1/(K-1) "
            "for K folds), as in the run reports."
        ),
        Table(headers, rows, caption="Table VI: MT-PKDOT with and without the centroid loss"),
        Text(items=sentences),
    ]
    return blocks


@file_set()  # sweep.csv, the report's markdown, HTML and figure: all new or all old
def write_sweep_report(out_dir: str | Path) -> Path:
    """Write ``sweep.csv``, ``sweep_report.md``, ``sweep_report.html`` and ``figures/fig7_sweep.png``."""
    from mtpkdot.report import figures as F
    from mtpkdot.report.document import Figure, Heading, Note, Table, Text, render_markdown
    from mtpkdot.report.html import render_html
    from mtpkdot.report.tables import METRIC_LABELS, format_mean_std

    out_dir = Path(out_dir)
    axes, points, methods, config = read_plan(out_dir)
    table = sweep_table(out_dir)
    run = RunLayout(out_dir)
    atomic_write_csv(table, run.sweep_csv)
    blocks: list[Any] = [
        Heading(f"MT-PKDOT sweep: {out_dir.name}", 1),
        Text(
            items=[
                f"**Base config:** `{config}`",
                "**Grid:** " + "; ".join(f"`{a.name}` ({a.key}) = {a.values}" for a in axes),
                f"**Methods trained per point:** {', '.join(methods)} (plus the multimodal teacher, the upper bound)",
                f"**Points:** {len(points)}, of which "
                f"{sum(p.status == 'skipped' for p in points)} skipped, {sum(p.status == 'failed' for p in points)} failed",
            ]
        ),
    ]
    for p in points:
        if p.status in ("skipped", "failed"):
            blocks.append(Note(f"point {p.name} {p.status}: {p.reason}"))
    have = table[table["n"] > 0]
    if have.empty:
        blocks.append(Note("no grid point has results yet (no summary.csv)"))
    else:
        metric = str(have["metric"].iloc[0])
        label = METRIC_LABELS.get(metric, metric)
        grid_cols = [
            c
            for c in table.columns
            if c not in {"point", "method", "metric", "mean", "std", "n", "status", "note"}
        ]
        methods_here = list(dict.fromkeys(have["method"]))
        headers = [*grid_cols, *[f"{m}" for m in methods_here], "n"]
        rows = []
        for _point, grp in have.groupby("point", sort=False):
            first = grp.iloc[0]
            by_m = {r["method"]: r for _, r in grp.iterrows()}
            rows.append(
                [str(first[c]) for c in grid_cols]
                + [
                    format_mean_std(by_m[m]["mean"], by_m[m]["std"], metric) if m in by_m else "—"
                    for m in methods_here
                ]
                + [str(int(grp["n"].max()))]
            )
        blocks += [
            Heading("Results per grid point", 2),
            Text(
                f"{label}, mean ± std (ddof = 1) over (seed, fold); `none` is the student without distillation "
                "(T-Net hallucination only), `lower_bound` the prevalent modalities alone and `teacher` the "
                "upper bound at the same point."
            ),
            Table(headers, rows, caption="Sweep results"),
        ]
        mt = have[have["method"] == "mtpkdot"]
        if not mt.empty and mt["batch_size"].nunique() + mt["anchors"].nunique() > 2:
            path = F.sweep_lines(mt, run.figures / "fig7_sweep.png", label)
            # the best point is chosen on VALIDATION scores; the test means only describe it
            val = mt["point"].map(lambda p: validation_score(out_dir / p, "mtpkdot", metric))
            if val.notna().any():
                best = mt.loc[val.idxmax()]
                best_text = (
                    f"Best point on validation {label} (mean over seeds and folds of each run's selected "
                    f"epoch): {best['point']} (validation {val[best.name]:.4g}; test "
                    f"{format_mean_std(best['mean'], best['std'], metric)}, n={int(best['n'])})."
                )
            else:
                best_text = (
                    "No validation scores in the point folders, so no point is named best (choosing one on "
                    "the test results above would select on the test folds)."
                )
            blocks += [
                Heading("Fig. 7: batch size and anchors", 2),
                Figure(
                    path,
                    f"Fig. 7: MT-PKDOT {label} vs student batch size b, one line per anchor count k "
                    "(error bars: std over seeds and folds)"
                    + (
                        "; one panel per centroid setting."
                        if "centroid" in mt.columns and mt["centroid"].nunique() > 1
                        else "."
                    ),
                ),
                Text(f"{best_text} The paper's best for Biovid (B) is b=128, k=30."),
            ]
        elif mt.empty:
            blocks.append(Note("no MT-PKDOT results: Fig. 7 skipped"))
        else:
            blocks.append(Note("batch size and anchors take a single value each: Fig. 7 skipped"))
        if any(SETTING_KEYS.get(a.key) == "centroid" for a in axes):
            blocks += centroid_blocks(out_dir, table, points)
    md = run.sweep_report_md
    atomic_write_text(md, render_markdown(blocks, out_dir))
    atomic_write_text(md.with_suffix(".html"), render_html(blocks, blocks[0].text))
    return md
