"""The experiment commands: run, demo, evaluate, export, predict (heavy imports inside each command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtpkdot.cli.common import comma_list, device_option, log_to_stderr, out_option, set_option, wait_option
from mtpkdot.layout import RunLayout, default_run_dir


def run_cmd(
    config: Path = typer.Argument(
        ..., help="experiment config: a YAML file or a shipped config's name (`mtpkdot config`)"
    ),
    set_: list[str] = set_option(),
    folds: str = typer.Option(None, "--folds", help="only these folds, e.g. 1,2 (default: all)"),
    methods: str = typer.Option(
        None,
        "--methods",
        help="only these students, e.g. none,pkdot,mtpkdot (default: student.methods; none = the "
        "student without distillation, T-Net hallucination only; the lower_bound and teacher rows always run)",
    ),
    seeds: str = typer.Option(None, "--seeds", help="seeds, e.g. 0,1,2 (default: the config's seeds)"),
    out: Path = out_option(),
    device: str = device_option(),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="mixed precision on CUDA"),
    report: bool = typer.Option(
        True,
        "--report/--no-report",
        help="write the report at the end; --no-report when several processes share one run directory "
        "(then `mtpkdot report RUN_DIR` once they are done)",
    ),
    wait: bool = wait_option("one of these seeds and folds"),
) -> None:
    """Train and evaluate every stage (backbones, teacher, T-Net, adapters, one student per method)
    for each seed and fold; write summary.csv and the report; print the mean +- std table.

    Re-running on the same --out resumes: finished stages are skipped, an interrupted stage
    continues from its last checkpoint. Several processes may share one --out when they run different
    --folds or --seeds; one asked for a seed and fold another process is running stops, or waits
    for it with --wait. Under `torchrun --nproc_per_node=N -m mtpkdot run ...`
    training is data-parallel over N processes; only rank 0 writes files.
    """
    from mtpkdot import plugins
    from mtpkdot.config import ConfigError, load_config

    plugins.load()  # the method sections are validated with the config
    try:
        cfg = load_config(config, set_)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    run_dir = out or default_run_dir(cfg.name)
    run_and_report(cfg, run_dir, folds, methods, seeds, device, amp, report, wait)


def demo_cmd(
    out: Path = out_option(Path("runs/demo")),
    set_: list[str] = set_option(),
    device: str = device_option(),
    folds: str = typer.Option(None, "--folds", help="only these folds, e.g. 1 (default: all 3)"),
    methods: str = typer.Option(None, "--methods", help="only these students, e.g. none,mtpkdot"),
) -> None:
    """Generate the embedded synthetic dataset (Biovid layout: videos + biosignal CSVs), prepare it,
    run every stage and method on it, write the report and print the results table.

    Data, store and results all go to --out. Under a minute and 0.6 GB on a quiet 2-core CPU
    (benchmarks/bench_demo.py).
    """
    from mtpkdot.pipeline.demo import demo_config

    cfg = demo_config(out, set_)
    run_and_report(cfg, out, folds, methods, None, device, None)


def evaluate_cmd(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
) -> None:
    """Rebuild summary.csv from the finished stages of a run and print the mean +- std table."""
    from mtpkdot.atomic import atomic_write_csv
    from mtpkdot.pipeline.experiment import collect_summary, shared_files
    from mtpkdot.report.tables import format_table

    RunLayout(run_dir).check_is_run()
    with shared_files(run_dir):
        summary = collect_summary(run_dir)
        atomic_write_csv(summary, RunLayout(run_dir).summary)
    typer.echo(format_table(summary))


def export_cmd(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a run directory"),
    fold: int = typer.Option(..., "--fold", help="which fold's student"),
    method: str = typer.Option(..., "--method", help="which student, e.g. mtpkdot"),
    out: Path = typer.Option(
        ..., "--out", help="bundle file to write, e.g. student.pt, in a folder that exists (none is created)"
    ),
    seed: int = typer.Option(None, "--seed", help="seed folder (default: the first one)"),
) -> None:
    """Write a student-only bundle: prevalent backbone, T-Nets, student fusion and the config they
    need. No teacher and no privileged backbone are included."""
    from mtpkdot.pipeline.bundle import export_bundle

    path = export_bundle(run_dir, fold, method, out, seed=seed)
    typer.echo(f"wrote {path}")


def predict_cmd(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, help="a bundle from `mtpkdot export`"),
    inputs: list[Path] = typer.Argument(..., help="video files, frame folders or prepared .npy samples"),
) -> None:
    """Predict from the prevalent modality alone; prints one JSON object per sample
    (class probabilities, or valence/arousal). An input that cannot be read is named on stderr, the
    others are still predicted, and the exit code says that one failed."""
    import json

    from mtpkdot import plugins
    from mtpkdot.errors import DataError
    from mtpkdot.pipeline.bundle import predict_each

    plugins.load()
    failed = 0
    for _, rows in predict_each(bundle, inputs):
        if isinstance(rows, Exception):
            failed += 1
            typer.echo(f"error: {rows}", err=True)
            continue
        for row in rows:
            typer.echo(json.dumps(row))
    if failed:
        raise DataError(f"{failed} of {len(inputs)} inputs could not be predicted (named above)")


def run_and_report(
    cfg: Any,
    run_dir: Path,
    folds: str | None,
    methods: str | None,
    seeds: str | None,
    device: str | None,
    amp: bool | None,
    report: bool = True,
    wait: bool = False,
) -> None:
    """Run the experiment of ``cfg`` in ``run_dir`` (the options as typed), then on rank 0 write the
    report (unless ``report`` is false) and print the table and where the results are."""
    log_to_stderr()
    from mtpkdot import plugins
    from mtpkdot.dist import rank
    from mtpkdot.pipeline.experiment import run_experiment, shared_files
    from mtpkdot.report import write_report
    from mtpkdot.report.tables import format_table

    plugins.load()
    summary = run_experiment(
        cfg,
        run_dir,
        folds=comma_list(folds, "--folds", int),
        methods=comma_list(methods, "--methods"),
        seeds=comma_list(seeds, "--seeds", int),
        device=device,
        amp=amp,
        wait=wait,
    )
    if rank() != 0:
        return
    written = None
    if report:
        with shared_files(run_dir):
            written = write_report(run_dir)
    typer.echo(format_table(summary))
    typer.echo(f"\nresults: {RunLayout(run_dir).summary}")
    if written is not None:
        typer.echo(f"report:  {written} and {RunLayout(run_dir).report_html}")
    typer.echo(f"run dir: {run_dir}  (per fold and stage: seed<s>/fold<k>/<stage>/metrics.csv, test.json)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("demo")(demo_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("export")(export_cmd)
    app.command("predict")(predict_cmd)
