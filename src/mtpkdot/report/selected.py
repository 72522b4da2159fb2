"""The epoch each stage selected on validation, and the validation metric at that epoch.

Every trained stage records its selected epoch as ``best_epoch`` in ``test.json`` and logs its
validation metrics per epoch as ``val_<metric>`` in ``metrics.csv``. A ``test.json`` with a
``source`` (the lower bound of a single prevalent modality, which is that modality's stage-1 model)
points at the stage folder whose curves it reused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from mtpkdot import layout
from mtpkdot.layout import FoldDir
from mtpkdot.report.rundir import RunDir
from mtpkdot.report.tables import metric_columns, ordered_methods, table_metrics

VAL_PREFIX = "val_"


def method_stage(method: str) -> str:
    """The stage folder whose ``test.json`` is ``method``'s row of summary.csv."""
    if method in (layout.TEACHER, layout.LOWER_BOUND):
        return method
    return layout.student_stage(method)


def _test_json(stage_dir: Path) -> dict:
    try:
        data = json.loads((stage_dir / layout.TEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def selected_epoch(stage_dir: Path) -> int | None:
    """``best_epoch`` of the stage's ``test.json`` (None when it has none)."""
    epoch = _test_json(stage_dir).get("best_epoch")
    return int(epoch) if isinstance(epoch, int | float) and math.isfinite(epoch) else None


def fold_selections(fold: FoldDir, stages: list[str]) -> dict[str, int]:
    """Selected epoch per stage of one fold, for the stages that record one."""
    out = {}
    for stage in stages:
        epoch = selected_epoch(fold.stage(stage))
        if epoch is not None:
            out[stage] = epoch
    return out


def _validation_row(fold: FoldDir, method: str) -> dict[str, float]:
    """``{metric: value}`` of the validation metrics at the epoch ``method``'s stage selected."""
    stage_dir = fold.stage(method_stage(method))
    test = _test_json(stage_dir)
    epoch = selected_epoch(stage_dir)
    curves_dir = fold.stage(str(test["source"])) if test.get("source") else stage_dir
    if epoch is None:
        return {}
    try:
        curves = pd.read_csv(curves_dir / layout.METRICS)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}
    if "epoch" not in curves.columns:
        return {}
    row = curves[curves["epoch"] == epoch]
    if row.empty:
        return {}
    cols = [c for c in curves.columns if c.startswith(VAL_PREFIX)]
    values = pd.to_numeric(row.iloc[-1][cols], errors="coerce")
    return {c[len(VAL_PREFIX) :]: float(v) for c, v in values.items()}


def validation_at_selection(run: RunDir, summary: pd.DataFrame) -> pd.DataFrame:
    """``seed, fold, method, <metric>...``: the validation metrics of the selected epoch per summary row."""
    folds = {(fd.seed, fd.fold): fd for fd in run.fold_dirs()}
    rows = []
    for seed, fold, method in summary[["seed", "fold", "method"]].itertuples(index=False):
        fd = folds.get((int(seed), int(fold)))
        values = _validation_row(fd, str(method)) if fd is not None else {}
        if values:
            rows.append({"seed": int(seed), "fold": int(fold), "method": str(method), **values})
    return pd.DataFrame(rows)


def gap_metrics(summary: pd.DataFrame, validation: pd.DataFrame) -> list[str]:
    """The metrics shown with their validation value: the table's metrics that were validated,
    else any other metric that was (regression runs may validate on the mean CCC only)."""
    validated = set(validation.columns)
    shown = [m for m in table_metrics(summary) if m in validated]
    return shown or [m for m in metric_columns(summary) if m in validated]


def gap_frame(summary: pd.DataFrame, validation: pd.DataFrame) -> pd.DataFrame:
    """``method, metric, validation, test, gap, n``: means over the (seed, fold) results that have both."""
    if validation.empty:
        return pd.DataFrame(columns=["method", "metric", "validation", "test", "gap", "n"])
    keys = ["seed", "fold", "method"]
    rows = []
    for metric in gap_metrics(summary, validation):
        both = summary[[*keys, metric]].merge(validation[[*keys, metric]], on=keys, suffixes=("_t", "_v"))
        both = both.dropna(subset=[f"{metric}_t", f"{metric}_v"])
        for method in ordered_methods(summary):
            sub = both[both["method"] == method]
            if sub.empty:
                continue
            val, test = float(sub[f"{metric}_v"].mean()), float(sub[f"{metric}_t"].mean())
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "validation": val,
                    "test": test,
                    "gap": val - test,
                    "n": len(sub),
                }
            )
    return pd.DataFrame(rows, columns=["method", "metric", "validation", "test", "gap", "n"])
