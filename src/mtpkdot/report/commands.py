"""CLI commands of the report concern: ``mtpkdot report RUN_DIR`` and ``mtpkdot sweep CONFIG --grid ...``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="a run directory (runs/<exp>) or a sweep folder"),
    ) -> None:
        """Write report.md, report.html (self-contained), figures/*.png and results.csv for a run.

        Given a sweep folder (it holds sweep.json), write sweep.csv and sweep_report.md/.html instead.
        """
        from mtpkdot.cli import user_errors

        if not run_dir.is_dir():
            raise typer.BadParameter(f"{run_dir} is not a directory", param_hint="RUN_DIR")
        with user_errors():
            if (run_dir / "sweep.json").is_file():
                from mtpkdot.report.sweep import write_sweep_report

                path = write_sweep_report(run_dir)
            else:
                from mtpkdot.report import write_report

                path = write_report(run_dir)
        typer.echo(f"wrote {path} and {path.with_suffix('.html')}")

    @app.command("sweep")
    def sweep_cmd(
        config: Path = typer.Argument(..., help="base experiment config (YAML)"),
        grid: list[str] = typer.Option(
            ...,
            "--grid",
            help="key=v1,v2,...; repeatable. batch_size -> student.batch_size, anchors -> distill.k, "
            "centroid -> distill.centroid; any other dotted config key as is. Values are read as YAML.",
        ),
        out: Path | None = typer.Option(None, "--out", help="sweep folder (default runs/<name>_sweep)"),
        overrides: list[str] = typer.Option(
            [], "--set", help="dotted override applied to every point, e.g. --set student.epochs=5"
        ),
        methods: str | None = typer.Option(
            None, "--methods", help="comma-separated student methods per point (default: none,mtpkdot)"
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate and list the points, run nothing"),
    ) -> None:
        """Run a grid of experiments (one run dir per point, resumable) and write the sweep report
        (Fig. 7: metric vs batch size x anchors; Table VI when centroid is on the grid)."""
        from mtpkdot.cli import comma_list
        from mtpkdot.config import ConfigError
        from mtpkdot.report.sweep import SweepError, parse_grid, plan_sweep, read_plan, run_sweep

        method_list = comma_list(methods, "--methods")
        try:
            if dry_run:
                out_dir, plan = plan_sweep(config, parse_grid(grid), overrides, method_list, out)
                for point, _ in plan:
                    flag = f"  SKIP ({point.reason})" if point.status == "skipped" else ""
                    typer.echo(f"{out_dir / point.name}{flag}")
                return
            path = run_sweep(config, grid, out=out, overrides=overrides, methods=method_list)
        except (SweepError, ConfigError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        _, points, _, _ = read_plan(path.parent)
        failed = [p.name for p in points if p.status == "failed"]
        typer.echo(f"wrote {path}")
        if failed:
            typer.echo(f"failed points (rerun the same command to resume): {', '.join(failed)}", err=True)
            raise typer.Exit(1)
