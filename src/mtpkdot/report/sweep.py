"""Hyper-parameter sweeps (paper section V-B: Fig. 7 batch size x anchors, Table VI centroid ablation).

``mtpkdot sweep CONFIG --grid batch_size=32,64,128 --grid anchors=10,20,30 [--grid centroid=none,similarity]``
runs one experiment per grid point into ``<out>/<point>/`` through the pipeline's experiment runner
(resumable, because the pipeline resumes finished stages) and writes ``sweep.csv`` and a sweep report.

Grid keys: ``batch_size`` -> ``student.batch_size``, ``anchors`` -> ``distill.k``, ``centroid`` ->
``distill.centroid``; any other (dotted) key is a config key as is. Values are split on commas and each
is read as YAML (``32`` is an int, ``0.5`` and ``1e-4`` floats, ``none`` the string "none"), as ``--set`` does.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mtpkdot.atomic import atomic_write_csv, atomic_write_text

log = logging.getLogger(__name__)

GRID_ALIASES = {"batch_size": "student.batch_size", "anchors": "distill.k", "centroid": "distill.centroid"}
SETTING_KEYS = {v: k for k, v in GRID_ALIASES.items()}  # dotted key -> sweep.csv column
DEFAULT_METHODS = ["none", "mtpkdot"]  # the teacher (upper bound) is trained by every run anyway
PLAN_FILE = "sweep.json"
# Grid keys under these sections leave every teacher-side stage unchanged, so points can share them.
STUDENT_SECTIONS = {"student", "distill"}

Runner = Callable[[Any, Path], Any]


class SweepError(ValueError):
    """A --grid item that cannot be parsed, or a sweep folder that cannot be read."""


@dataclass
class GridAxis:
    name: str  # as given on the command line (batch_size, anchors, student.lr ...)
    key: str  # dotted config key
    values: list[Any]


@dataclass
class Point:
    name: str
    values: dict[str, Any]  # axis name -> value
    settings: dict[str, Any] = field(default_factory=dict)  # batch_size, anchors, centroid after overrides
    status: str = "planned"  # planned | done | skipped | failed
    reason: str = ""


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_value(raw: str) -> Any:
    """One grid value read as YAML; numbers YAML 1.1 leaves as text (``1e-4``) become floats."""
    raw = raw.strip()
    if not raw:
        raise SweepError("empty value in --grid")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SweepError(f"grid value {raw!r} is not valid YAML ({exc})") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value)
    return value


def parse_grid(items: Sequence[str]) -> list[GridAxis]:
    """``["batch_size=32,64", "anchors=10"]`` -> axes with mapped keys and YAML-typed values."""
    axes: list[GridAxis] = []
    for item in items:
        if "=" not in item:
            raise SweepError(f"--grid {item!r} is not of the form key=v1,v2,...")
        name, raw = (s.strip() for s in item.split("=", 1))
        if not name or any(not p for p in name.split(".")):
            raise SweepError(f"--grid {item!r} has an empty key")
        key = GRID_ALIASES.get(name, name)
        if any(a.key == key for a in axes):
            raise SweepError(f"--grid key {name!r} ({key}) is given twice")
        values = [parse_value(v) for v in raw.split(",")]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise SweepError(f"--grid {item!r} repeats a value")
        axes.append(GridAxis(name, key, values))
    if not axes:
        raise SweepError("a sweep needs at least one --grid key=v1,v2")
    return axes


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def point_name(values: dict[str, Any]) -> str:
    """Folder name of a grid point, e.g. ``batch_size-32_anchors-10_centroid-none``."""
    return "_".join(f"{_slug(k)}-{_slug(v)}" for k, v in values.items())


def grid_points(axes: Sequence[GridAxis]) -> list[Point]:
    """Cartesian product of the axes, in the order given (the last axis varies fastest)."""
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        values = {a.name: v for a, v in zip(axes, combo, strict=True)}
        out.append(Point(point_name(values), values))
    return out


def point_overrides(axes: Sequence[GridAxis], point: Point) -> list[str]:
    # JSON is valid YAML, so the config loader types each value back exactly
    return [f"{a.key}={json.dumps(point.values[a.name])}" for a in axes]


def _settings(cfg: Any) -> dict[str, Any]:
    return {
        "batch_size": cfg.student.batch_size,
        "anchors": cfg.distill.k,
        "centroid": cfg.distill.centroid,
    }


def plan_sweep(
    config: str | Path,
    axes: Sequence[GridAxis],
    overrides: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    out: str | Path | None = None,
) -> tuple[Path, list[tuple[Point, Any]]]:
    """Resolve every point's config (validated now, so a typo fails before anything runs).

    Points with anchors >= batch size are marked skipped: a row of the b x b similarity matrix has
    b columns, so k >= b anchors select every column and the anchor selection (Eq. 3) is void.
    The store of prepared data is shared between points unless the grid changes ``data.*``.
    """
    from mtpkdot.config import ConfigError, load_config

    methods = list(methods) if methods else list(DEFAULT_METHODS)
    base = load_config(config, list(overrides))
    out_dir = Path(out) if out is not None else Path("runs") / f"{base.name}_sweep"
    extra = [f"student.methods={json.dumps(methods)}"]
    shares_data = not any(a.key.startswith("data.") for a in axes)
    if shares_data and base.data.store is None:
        extra.append(f"data.store={json.dumps(str((out_dir / 'store').resolve()))}")
    plan = []
    for point in grid_points(axes):
        try:
            cfg = load_config(config, [*overrides, *extra, *point_overrides(axes, point)])
        except ConfigError as exc:
            raise SweepError(f"grid point {point.name}: {exc}") from None
        cfg.name = f"{base.name} [{point.name}]"
        point.settings = _settings(cfg)
        if cfg.distill.k >= cfg.student.batch_size:
            point.status = "skipped"
            point.reason = (
                f"anchors k={cfg.distill.k} >= batch size b={cfg.student.batch_size}: "
                "anchor selection would keep every column"
            )
        plan.append((point, cfg))
    return out_dir, plan


def _write_plan(
    out_dir: Path,
    config: str | Path,
    axes: Sequence[GridAxis],
    points: Sequence[Point],
    methods: Sequence[str],
) -> None:
    data = {
        "config": str(config),
        "axes": [asdict(a) for a in axes],
        "methods": list(methods),
        "points": [asdict(p) for p in points],
    }
    atomic_write_text(out_dir / PLAN_FILE, json.dumps(data, indent=2, default=str) + "\n")


def share_upstream(src: Path, dst: Path) -> int:
    """Hard-link the finished teacher-side stages of run ``src`` into run ``dst``; return how many.

    When a sweep varies only student/distillation settings, every point would retrain identical
    backbones, teachers, T-Nets and adapters. Linking them is safe: the pipeline still checks each
    stage's stored config section against the point's own config (and refuses a mismatch), and every
    file is replaced atomically, never rewritten in place, so a link is never changed through the other.
    """
    import os
    import shutil

    count = 0
    for stage_dir in sorted(src.glob("seed*/fold*/*")):
        if not stage_dir.is_dir() or not (stage_dir / "done").is_file():
            continue
        if stage_dir.name.startswith("student_"):  # what the grid varies; every other stage is upstream
            continue
        target = dst / stage_dir.relative_to(src)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage_dir, target, copy_function=os.link)
        count += 1
    return count


def _default_runner(cfg: Any, out_dir: Path) -> Any:
    """The pipeline's experiment runner (resumes finished stages), then the point's own report."""
    from mtpkdot.pipeline.experiment import run_experiment
    from mtpkdot.report.build import write_report

    summary = run_experiment(cfg, out_dir)
    try:
        write_report(out_dir)
    except Exception:  # the sweep report does not need the point's report; keep the results
        log.exception("report of sweep point %s failed", out_dir)
    return summary


def run_sweep(
    config: str | Path,
    grid: Sequence[str],
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    runner: Runner | None = None,
    dry_run: bool = False,
) -> Path:
    """Run every grid point (skipping invalid ones), then write the sweep report; return its path.

    A point that fails is recorded as failed (with the error) and the sweep goes on; rerunning the
    same command resumes, because each point's run directory resumes its finished stages.
    """
    axes = parse_grid(grid)
    methods = list(methods) if methods else list(DEFAULT_METHODS)
    out_dir, plan = plan_sweep(config, axes, overrides, methods, out)
    out_dir.mkdir(parents=True, exist_ok=True)
    points = [p for p, _ in plan]
    _write_plan(out_dir, config, axes, points, methods)
    runner = runner or _default_runner
    shareable = all(a.key.split(".")[0] in STUDENT_SECTIONS for a in axes)
    donor: Path | None = None
    for point, cfg in plan:
        if point.status == "skipped":
            log.warning("sweep: skipping %s (%s)", point.name, point.reason)
            continue
        if dry_run:
            continue
        log.info("sweep: running %s", point.name)
        try:
            if shareable and donor is not None:
                share_upstream(donor, out_dir / point.name)
            runner(cfg, out_dir / point.name)
            point.status, point.reason = "done", ""
            donor = donor or out_dir / point.name
        except Exception as exc:  # one broken point must not lose the others
            log.exception("sweep point %s failed", point.name)
            point.status, point.reason = "failed", f"{type(exc).__name__}: {exc}"
        _write_plan(out_dir, config, axes, points, methods)
    return write_sweep_report(out_dir)


# --- sweep report ---------------------------------------------------------------------------


def read_plan(out_dir: str | Path) -> tuple[list[GridAxis], list[Point], list[str], str]:
    p = Path(out_dir) / PLAN_FILE
    if not p.is_file():
        raise SweepError(f"{p} does not exist: not a sweep folder (run `mtpkdot sweep` first)")
    try:
        data = json.loads(p.read_text())
        axes = [GridAxis(**a) for a in data["axes"]]
        points = [Point(**pt) for pt in data["points"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SweepError(f"{p} is not a valid sweep plan ({exc})") from None
    return axes, points, list(data.get("methods", DEFAULT_METHODS)), str(data.get("config", ""))


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
        summary_path = out_dir / pt.name / "summary.csv"
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
    a setting on the test folds is the selection-on-test the protocol forbids (DESIGN.md section 4).
    """
    values = []
    for test_json in sorted(Path(point_dir).glob(f"seed*/fold*/student_{method}/test.json")):
        stage = test_json.parent
        metrics_csv = stage / "metrics.csv"
        if not (stage / "done").is_file() or not metrics_csv.is_file():
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
        p = out_dir / pt.name / "summary.csv"
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
    from mtpkdot.report.stats import paired_test
    from mtpkdot.report.tables import METRIC_LABELS, fmt, format_mean_std

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
        *[f"Wilcoxon {v} vs {ref}" for v in values if v != ref],
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
                t = paired_test(pairs, by_c[v]["point"], by_c[ref]["point"], metric)
                cells.append(f"{t.describe_p()} (n={t.n})")
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
            f"{METRIC_LABELS.get(metric, metric)} of MT-PKDOT, mean ± std over (seed, fold); paired Wilcoxon "
            "signed-rank test (two-sided) between centroid settings, pairs matched on (seed, fold)."
        ),
        Table(headers, rows, caption="Table VI: MT-PKDOT with and without the centroid loss"),
        Text(items=sentences),
    ]
    return blocks


def write_sweep_report(out_dir: str | Path) -> Path:
    """Write ``sweep.csv``, ``sweep_report.md``, ``sweep_report.html`` and ``figures/fig7_sweep.png``."""
    from mtpkdot.report import figures as F
    from mtpkdot.report.document import Figure, Heading, Note, Table, Text, render_markdown
    from mtpkdot.report.html import render_html
    from mtpkdot.report.tables import METRIC_LABELS, format_mean_std

    out_dir = Path(out_dir)
    axes, points, methods, config = read_plan(out_dir)
    table = sweep_table(out_dir)
    atomic_write_csv(table, out_dir / "sweep.csv")
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
                f"{label}, mean ± std (ddof = 1) over (seed, fold); `none` is the lower bound and `teacher` the "
                "upper bound at the same point."
            ),
            Table(headers, rows, caption="Sweep results"),
        ]
        mt = have[have["method"] == "mtpkdot"]
        if not mt.empty and mt["batch_size"].nunique() + mt["anchors"].nunique() > 2:
            path = F.sweep_lines(mt, out_dir / "figures" / "fig7_sweep.png", label)
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
        if any(a.key == "distill.centroid" for a in axes):
            blocks += centroid_blocks(out_dir, table, points)
    md = out_dir / "sweep_report.md"
    atomic_write_text(md, render_markdown(blocks, out_dir))
    atomic_write_text(out_dir / "sweep_report.html", render_html(blocks, blocks[0].text))
    return md
