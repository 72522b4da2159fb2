"""CLI commands of the pipeline: run, demo, evaluate, export, predict, sweep (heavy imports inside each command)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from mtpkdot.layout import RunLayout, default_run_dir

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        config: Path = typer.Argument(
            ..., help="experiment config: a YAML file or a shipped config's name (`mtpkdot config`)"
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="override a config key, dotted: --set student.lr=1e-4 (repeatable)"
        ),
        folds: str = typer.Option(None, "--folds", help="only these folds, e.g. 1,2 (default: all)"),
        methods: str = typer.Option(
            None,
            "--methods",
            help="only these students, e.g. none,pkdot,mtpkdot (default: student.methods; none = the "
            "student without distillation, T-Net hallucination only; the lower_bound and teacher rows always run)",
        ),
        seeds: str = typer.Option(None, "--seeds", help="seeds, e.g. 0,1,2 (default: the config's seeds)"),
        out: Path = typer.Option(
            None, "--out", help="run directory (default: runs/<name>); an existing one resumes"
        ),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda (default: the config's device)"),
        amp: bool = typer.Option(None, "--amp/--no-amp", help="mixed precision on CUDA"),
        report: bool = typer.Option(
            True,
            "--report/--no-report",
            help="write the report at the end; --no-report when several processes share one run directory "
            "(then `mtpkdot report RUN_DIR` once they are done)",
        ),
    ) -> None:
        """Train and evaluate every stage (backbones, teacher, T-Net, adapters, one student per method)
        for each seed and fold; write summary.csv and the report; print the mean +- std table.

        Re-running on the same --out resumes: finished stages are skipped, an interrupted stage
        continues from its last checkpoint. Under `torchrun --nproc_per_node=N -m mtpkdot run ...`
        training is data-parallel over N processes; only rank 0 writes files.
        """
        from mtpkdot.config import ConfigError, load_config

        try:
            cfg = load_config(config, set_)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        run_dir = out or default_run_dir(cfg.name)
        _run_and_report(cfg, run_dir, folds, methods, seeds, device, amp, report)

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="where data, store and results go"),
        set_: list[str] = typer.Option([], "--set", help="override a key of the demo config (dotted)"),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda"),
        folds: str = typer.Option(None, "--folds", help="only these folds, e.g. 1 (default: all 3)"),
        methods: str = typer.Option(None, "--methods", help="only these students, e.g. none,mtpkdot"),
    ) -> None:
        """Generate the embedded synthetic dataset (Biovid layout: videos + biosignal CSVs), prepare it,
        run every stage and method on it, write the report and print the results table.

        Under a minute and 0.6 GB on a quiet 2-core CPU (benchmarks/bench_demo.py).
        """
        from mtpkdot.pipeline.demo import demo_config

        cfg = demo_config(out, set_)
        _run_and_report(cfg, out, folds, methods, None, device, None)

    @app.command("evaluate")
    def evaluate_cmd(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
    ) -> None:
        """Rebuild summary.csv from the finished stages of a run and print the mean +- std table."""
        from mtpkdot.atomic import atomic_write_csv
        from mtpkdot.pipeline.experiment import collect_summary
        from mtpkdot.report.tables import format_table

        summary = collect_summary(run_dir)
        atomic_write_csv(summary, RunLayout(run_dir).summary)
        typer.echo(format_table(summary))

    @app.command("export")
    def export_cmd(
        run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
        fold: int = typer.Option(..., "--fold", help="which fold's student"),
        method: str = typer.Option(..., "--method", help="which student, e.g. mtpkdot"),
        out: Path = typer.Option(..., "--out", help="bundle file to write, e.g. student.pt"),
        seed: int = typer.Option(None, "--seed", help="seed folder (default: the first one)"),
    ) -> None:
        """Write a student-only bundle: prevalent backbone, T-Nets, student fusion and the config they
        need. No teacher and no privileged backbone are included."""
        from mtpkdot.cli import user_errors
        from mtpkdot.pipeline.bundle import export_bundle

        with user_errors():
            path = export_bundle(run_dir, fold, method, out, seed=seed)
        typer.echo(f"wrote {path}")

    @app.command("predict")
    def predict_cmd(
        bundle: Path = typer.Argument(
            ..., exists=True, dir_okay=False, help="a bundle from `mtpkdot export`"
        ),
        inputs: list[Path] = typer.Argument(
            ..., exists=True, help="video files, frame folders or prepared .npy samples"
        ),
    ) -> None:
        """Predict from the prevalent modality alone; prints one JSON object per sample
        (class probabilities, or valence/arousal)."""
        import json

        from mtpkdot.cli import user_errors
        from mtpkdot.pipeline.bundle import predict

        with user_errors():
            rows = predict(bundle, inputs)
        for row in rows:
            typer.echo(json.dumps(row))

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
        from mtpkdot.cli import comma_list, log_to_stderr
        from mtpkdot.config import ConfigError
        from mtpkdot.pipeline.sweep import parse_grid, plan_sweep, run_sweep
        from mtpkdot.report.sweep import write_sweep_report
        from mtpkdot.sweep_plan import SweepError, read_plan

        log_to_stderr()
        method_list = comma_list(methods, "--methods")
        try:
            if dry_run:
                out_dir, plan = plan_sweep(config, parse_grid(grid), overrides, method_list, out)
                for point, _ in plan:
                    flag = f"  SKIP ({point.reason})" if point.status == "skipped" else ""
                    typer.echo(f"{out_dir / point.name}{flag}")
                return
            out_dir = run_sweep(
                config, grid, out=out, overrides=overrides, methods=method_list, runner=_run_point
            )
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


def _run_and_report(cfg, run_dir: Path, folds, methods, seeds, device, amp, report=True) -> None:  # noqa: ANN001
    from mtpkdot.cli import comma_list, log_to_stderr, user_errors

    log_to_stderr()
    from mtpkdot.pipeline.experiment import run_experiment
    from mtpkdot.report.tables import format_table

    with user_errors():
        summary = run_experiment(
            cfg,
            run_dir,
            folds=comma_list(folds, "--folds", int),
            methods=comma_list(methods, "--methods"),
            seeds=comma_list(seeds, "--seeds", int),
            device=device,
            amp=amp,
        )
    from mtpkdot.dist import rank

    if rank() != 0:
        return
    written = None
    try:
        from mtpkdot.report import write_report
    except ImportError:
        write_report = None
    if write_report is not None and report:
        written = write_report(run_dir)
    typer.echo(format_table(summary))
    typer.echo(f"\nresults: {RunLayout(run_dir).summary}")
    if written is not None:
        typer.echo(f"report:  {written}")
    typer.echo(f"run dir: {run_dir}  (per fold and stage: seed<s>/fold<k>/<stage>/metrics.csv, test.json)")


def _run_point(cfg: Any, out_dir: Path) -> Any:
    """One sweep point: the experiment (resumes finished stages), then the point's own report."""
    from mtpkdot.pipeline.experiment import run_experiment
    from mtpkdot.report.build import write_report

    summary = run_experiment(cfg, out_dir)
    try:
        write_report(out_dir)
    except Exception:  # the sweep report does not need the point's report; keep the results
        log.exception("report of sweep point %s failed", out_dir)
    return summary
