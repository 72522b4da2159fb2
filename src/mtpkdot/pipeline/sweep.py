"""Hyper-parameter sweeps (paper section V-B: Fig. 7 batch size x anchors, Table VI centroid ablation).

``mtpkdot sweep CONFIG --grid batch_size=32,64,128 --grid anchors=10,20,30 [--grid centroid=none,similarity]``
runs one experiment per grid point into ``<out>/<point>/`` through the pipeline's experiment runner
(resumable, because the pipeline resumes finished stages); the sweep report is
``mtpkdot.report.sweep`` (rendering only). Steps: :func:`parse_grid` -> :func:`plan_sweep` ->
:func:`run_sweep` (with :func:`share_upstream` between points).

Grid keys: ``batch_size`` -> ``student.batch_size``, ``anchors`` -> ``distill.mtpkdot.k``, ``centroid``
-> ``distill.mtpkdot.centroid``; any other (dotted) key is a config key as is. Values are split on commas and each
is read as YAML (``32`` is an int, ``0.5`` and ``1e-4`` floats, ``none`` the string "none"), as ``--set`` does.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from mtpkdot.layout import DONE, RunLayout, default_run_dir
from mtpkdot.sweep_plan import (
    DEFAULT_METHODS,
    GRID_ALIASES,
    GridAxis,
    Point,
    SweepError,
    write_plan,
)

log = logging.getLogger(__name__)

Runner = Callable[[Any, Path], Any]


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
    own = cfg.distill.options("mtpkdot")
    return {"batch_size": cfg.student.batch_size, "anchors": own.k, "centroid": own.centroid}


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
    import mtpkdot.distill  # noqa: F401  (registers the built-in methods: their sections are validated)
    from mtpkdot.config import ConfigError, load_config

    methods = list(methods) if methods else list(DEFAULT_METHODS)
    base = load_config(config, list(overrides))
    out_dir = Path(out) if out is not None else default_run_dir(f"{base.name}_sweep")
    extra = [f"student.methods={json.dumps(methods)}"]
    shares_data = not any(a.key.startswith("data.") for a in axes)
    if shares_data and base.data.store is None:
        extra.append(f"data.store={json.dumps(str(RunLayout(out_dir).store(None).resolve()))}")
    plan = []
    for point in grid_points(axes):
        try:
            cfg = load_config(config, [*overrides, *extra, *point_overrides(axes, point)])
        except ConfigError as exc:
            raise SweepError(f"grid point {point.name}: {exc}") from None
        cfg.name = f"{base.name} [{point.name}]"
        point.settings = _settings(cfg)
        if point.settings["anchors"] >= cfg.student.batch_size:
            point.status = "skipped"
            point.reason = (
                f"anchors k={point.settings['anchors']} >= batch size b={cfg.student.batch_size}: "
                "anchor selection would keep every column"
            )
        plan.append((point, cfg))
    return out_dir, plan


def share_upstream(src: Path, dst: Path, varied: Sequence[str] = ("student", "distill")) -> int:
    """Hard-link the finished stages of run ``src`` that the ``varied`` top-level config sections do
    not affect (:func:`mtpkdot.pipeline.graph.shareable`) into run ``dst``; return how many.

    When a sweep varies only student/distillation settings, every point would retrain identical
    backbones, teachers, T-Nets and adapters. Linking them is safe: the pipeline still checks each
    stage's stored config section against the point's own config (and refuses a mismatch), and every
    file is replaced atomically, never rewritten in place, so a link is never changed through the other.
    """
    import os
    import shutil

    from mtpkdot.pipeline.graph import find, shareable

    keep = shareable(varied)
    count = 0
    for stage_dir in RunLayout(src).stage_dirs():
        if not (stage_dir / DONE).is_file():
            continue
        try:
            spec, _ = find(stage_dir.name)
        except KeyError:
            continue
        if spec.name not in keep:
            continue
        target = dst / stage_dir.relative_to(src)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage_dir, target, copy_function=os.link)
        count += 1
    return count


def _run_experiment(cfg: Any, out_dir: Path) -> Any:
    from mtpkdot.pipeline.experiment import run_experiment

    return run_experiment(cfg, out_dir)


def run_sweep(
    config: str | Path,
    grid: Sequence[str],
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    runner: Runner | None = None,
) -> Path:
    """Run every grid point (skipping invalid ones); return the sweep folder (its ``sweep.json`` records
    each point's status; ``mtpkdot.report.sweep.write_sweep_report`` renders it).

    A point that fails is recorded as failed (with the error) and the sweep goes on; rerunning the
    same command resumes, because each point's run directory resumes its finished stages.
    """
    axes = parse_grid(grid)
    methods = list(methods) if methods else list(DEFAULT_METHODS)
    out_dir, plan = plan_sweep(config, axes, overrides, methods, out)
    out_dir.mkdir(parents=True, exist_ok=True)
    points = [p for p, _ in plan]
    write_plan(out_dir, config, axes, points, methods)
    runner = runner or _run_experiment
    varied = sorted({a.key.split(".")[0] for a in axes})
    donor: Path | None = None
    for point, cfg in plan:
        if point.status == "skipped":
            log.warning("sweep: skipping %s (%s)", point.name, point.reason)
            continue
        log.info("sweep: running %s", point.name)
        try:
            if donor is not None:
                share_upstream(donor, out_dir / point.name, varied)
            runner(cfg, out_dir / point.name)
            point.status, point.reason = "done", ""
            donor = donor or out_dir / point.name
        except Exception as exc:  # one broken point must not lose the others
            log.exception("sweep point %s failed", point.name)
            point.status, point.reason = "failed", f"{type(exc).__name__}: {exc}"
        write_plan(out_dir, config, axes, points, methods)
    return out_dir
