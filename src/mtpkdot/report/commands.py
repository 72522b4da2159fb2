"""CLI command of the report concern: ``mtpkdot report RUN_DIR`` (a run or a sweep folder)."""

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
        from mtpkdot.layout import RunLayout

        if not run_dir.is_dir():
            raise typer.BadParameter(f"{run_dir} is not a directory", param_hint="RUN_DIR")
        with user_errors():
            if RunLayout(run_dir).sweep_plan.is_file():
                from mtpkdot.report.sweep import write_sweep_report

                path = write_sweep_report(run_dir)
            else:
                from mtpkdot.report import write_report

                path = write_report(run_dir)
        typer.echo(f"wrote {path} and {path.with_suffix('.html')}")
