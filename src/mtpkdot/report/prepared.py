"""The report's "Data" line: how many samples ``prepare`` kept, how many it dropped and why.

``prepare`` writes ``prepare_report.csv`` into the store (one row per manifest sample: ``sample_id,
subject_id, status`` ok/failed, ``reason``) and a copy of the store's ``meta.json`` into the run
directory (``n`` kept, ``failed``), which stays when the store is deleted. Reasons name the sample's
file, so they are grouped with the file names and sample ids taken out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

PREPARE_REPORT = "prepare_report.csv"  # the store file written by mtpkdot.data.prepare
MAX_REASONS = 5  # the line names this many groups of reasons, then counts the rest
MAX_EXAMPLES = 3  # sample ids shown per reason
ELIDED = "…"  # stands for a file name or id in a grouped reason (not <file>: markdown would eat a tag)

# a path: a token holding a separator, or a bare file name with an extension of letters
_PATH = re.compile(r"(?:[^\s'\"(),;]*[/\\][^\s'\"(),;]*|[\w.\-]+\.[A-Za-z][A-Za-z0-9]{0,4}\b)")


def read_prepare_report(path: Path) -> pd.DataFrame | None:
    """The store's prepare_report.csv (None when it is missing or unreadable)."""
    try:
        report = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    return report if {"sample_id", "status", "reason"} <= set(report.columns) else None


def reason_kind(reason: str, sample_id: str = "", subject_id: str = "") -> str:
    """``reason`` without what differs between samples: file names, the sample id, the subject id."""
    text = reason
    for value in (sample_id, subject_id):
        if value:
            text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", ELIDED, text)
    text = _PATH.sub(ELIDED, text)
    return re.sub(r"\s+", " ", text).strip() or "no reason recorded"


def _grouped(rows: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """(reason kind, sample ids), most frequent first."""
    groups: dict[str, list[str]] = {}
    for r in rows.itertuples(index=False):
        kind = reason_kind(str(r.reason), str(r.sample_id), str(getattr(r, "subject_id", "")))
        groups.setdefault(kind, []).append(str(r.sample_id))
    return sorted(groups.items(), key=lambda g: -len(g[1]))


def _describe(groups: list[tuple[str, list[str]]]) -> str:
    parts = []
    for kind, ids in groups[:MAX_REASONS]:
        shown = ", ".join(f"`{i}`" for i in ids[:MAX_EXAMPLES]) + (", ..." if len(ids) > MAX_EXAMPLES else "")
        parts.append(f"{len(ids)} × {kind} ({shown})")
    rest = groups[MAX_REASONS:]
    if rest:
        parts.append(f"{sum(len(ids) for _, ids in rest)} more with {len(rest)} other reasons")
    return "; ".join(parts)


def data_summary(report: pd.DataFrame) -> str:
    """``320 samples in the manifest: 318 prepared, 2 dropped: 2 × <reason> (ids)``, plus the kept
    samples that carry a note (e.g. cropped with their subject's face box)."""
    ok = report["status"] == "ok"
    n, kept = len(report), int(ok.sum())
    text = f"{n} samples in the manifest, {kept} prepared"
    failed = report[~ok]
    text += f", {len(failed)} dropped" + (f": {_describe(_grouped(failed))}" if len(failed) else "")
    noted = report[ok & (report["reason"].str.strip() != "")]
    if len(noted):
        text += f"; kept with a note: {_describe(_grouped(noted))}"
    return text


def meta_summary(path: Path) -> str | None:
    """The counts alone, from the run's copy of the store's meta.json (None when unreadable)."""
    try:
        meta = json.loads(path.read_text())
        kept, failed = int(meta["n"]), int(meta.get("failed", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"{kept + failed} samples in the manifest, {kept} prepared, {failed} dropped"
