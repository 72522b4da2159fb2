"""The sweep folder's plan file (``sweep.json``): written by the sweep orchestrator
(``mtpkdot.pipeline.sweep``), read by the sweep report (``mtpkdot.report.sweep``).

It sits below both, so the report renders a sweep without importing the code that runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtpkdot.atomic import atomic_write_text
from mtpkdot.errors import UserError
from mtpkdot.layout import RunLayout

GRID_ALIASES = {
    "batch_size": "student.batch_size",
    "anchors": "distill.mtpkdot.k",
    "centroid": "distill.mtpkdot.centroid",
}
# dotted key -> sweep.csv column (sweeps planned before config version 2 name the version-1 keys)
SETTING_KEYS = {v: k for k, v in GRID_ALIASES.items()} | {
    "distill.k": "anchors",
    "distill.centroid": "centroid",
}
DEFAULT_METHODS = ["none", "mtpkdot"]  # the teacher (upper bound) is trained by every run anyway


class SweepError(UserError, ValueError):
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


def write_plan(
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
    atomic_write_text(RunLayout(out_dir).sweep_plan, json.dumps(data, indent=2, default=str) + "\n")


def read_plan(out_dir: str | Path) -> tuple[list[GridAxis], list[Point], list[str], str]:
    p = RunLayout(out_dir).sweep_plan
    if not p.is_file():
        raise SweepError(f"{p} does not exist: not a sweep folder (run `mtpkdot sweep` first)")
    try:
        data = json.loads(p.read_text())
        axes = [GridAxis(**a) for a in data["axes"]]
        points = [Point(**pt) for pt in data["points"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SweepError(f"{p} is not a valid sweep plan ({exc})") from None
    return axes, points, list(data.get("methods", DEFAULT_METHODS)), str(data.get("config", ""))
