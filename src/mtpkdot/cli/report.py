"""The report commands: ``mtpkdot report RUN_DIR`` (a run or a sweep folder) and ``mtpkdot sweep``,
which runs a grid of experiments and writes their sweep report."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from mtpkdot.cli.common import comma_list, log_to_stderr, set_option

log = logging.getLogger(__name__)


def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (runs/<exp>) or a sweep folder"),
) -> None:
    """Write report.md, report.html (self-contained), figures/*.png and results.csv for a run.

    Given a sweep folder (it holds sweep.json), write sweep.csv and sweep_report.md/.html instead.
    """
    from mtpkdot.layout import RunLayout

    if not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir} is not a directory", param_hint="RUN_DIR")
    if RunLayout(run_dir).sweep_plan.is_file():
        from mtpkdot.report.sweep import write_sweep_report

        path = write_sweep_report(run_dir)
    else:
        from mtpkdot.pipeline.experiment import shared_files
        from mtpkdot.report import write_report

        # a folder that is no run (refused below) gets no lock file either
        is_run = RunLayout(run_dir).config.is_file()
        with shared_files(run_dir) if is_run else nullcontext():
            path = write_report(run_dir)
    typer.echo(f"wrote {path} and {path.with_suffix('.html')}")


def sweep_cmd(
    config: Path = typer.Argument(..., help="base experiment config (YAML)"),
    grid: list[str] = typer.Option(
        ...,
        "--grid",
        help="key=v1,v2,...; repeatable. batch_size -> student.batch_size, anchors -> distill.mtpkdot.k, "
        "centroid -> distill.mtpkdot.centroid; any other dotted config key as is. Values are read as YAML.",
    ),
    out: Path | None = typer.Option(None, "--out", help="sweep folder (default runs/<name>_sweep)"),
    overrides: list[str] = set_option(),
    methods: str | None = typer.Option(
        None, "--methods", help="comma-separated student methods per point (default: none,mtpkdot)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="validate and list the points, run nothing"),
) -> None:
    """Run a grid of experiments (one run dir per point, resumable) and write the sweep report
    (Fig. 7: metric vs batch size x anchors; Table VI when centroid is on the grid). --set applies
    to every point."""
    from mtpkdot import plugins
    from mtpkdot.config import ConfigError
    from mtpkdot.pipeline.sweep import parse_grid, plan_sweep, run_sweep
    from mtpkdot.report.sweep import write_sweep_report
    from mtpkdot.sweep_plan import SweepError, read_plan

    log_to_stderr()
    plugins.load()
    method_list = comma_list(methods, "--methods")
    try:
        if dry_run:
            out_dir, plan = plan_sweep(config, parse_grid(grid), overrides, method_list, out)
            for point, _ in plan:
                flag = f"  SKIP ({point.reason})" if point.status == "skipped" else ""
                typer.echo(f"{out_dir / point.name}{flag}")
            return
        out_dir = run_sweep(config, grid, out=out, overrides=overrides, methods=method_list, runner=run_point)
    except (SweepError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    path = write_sweep_report(out_dir)
    _, points, _, _ = read_plan(out_dir)
    failed = [p.name for p in points if p.status == "failed"]
    typer.echo(f"wrote {path}")
    if failed:
        typer.echo(f"failed points (rerun the same command to resume): {', '.join(failed)}", err=True)
        raise typer.Exit(1)


def run_point(cfg: Any, out_dir: Path) -> Any:
    """One sweep point: the experiment (resumes finished stages), then the point's own report."""
    from mtpkdot.pipeline.experiment import run_experiment
    from mtpkdot.report.build import write_report

    summary = run_experiment(cfg, out_dir)
    try:
        write_report(out_dir)
    except Exception:  # the sweep report does not need the point's report; keep the results
        log.exception("report of sweep point %s failed", out_dir)
    return summary


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("sweep")(sweep_cmd)
