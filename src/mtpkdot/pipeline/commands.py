"""CLI commands of the pipeline: run, demo, evaluate, export, predict (heavy imports inside each command)."""

from __future__ import annotations

from pathlib import Path

import typer


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
            None, "--methods", help="only these students, e.g. none,pkdot,mtpkdot (default: student.methods)"
        ),
        seeds: str = typer.Option(None, "--seeds", help="seeds, e.g. 0,1,2 (default: the config's seeds)"),
        out: Path = typer.Option(
            None, "--out", help="run directory (default: runs/<name>); an existing one resumes"
        ),
        device: str = typer.Option(None, "--device", help="auto | cpu | cuda (default: the config's device)"),
        amp: bool = typer.Option(None, "--amp/--no-amp", help="mixed precision on CUDA"),
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
        run_dir = out or Path("runs") / cfg.name
        _run_and_report(cfg, run_dir, folds, methods, seeds, device, amp)

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

        About 1.5 minutes and 0.6 GB on a 2-core CPU (benchmarks/bench_demo.py).
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
        from mtpkdot.pipeline.experiment import collect_summary, format_table

        summary = collect_summary(run_dir)
        atomic_write_csv(summary, run_dir / "summary.csv")
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


def _run_and_report(cfg, run_dir: Path, folds, methods, seeds, device, amp) -> None:  # noqa: ANN001
    from mtpkdot.cli import comma_list, user_errors
    from mtpkdot.pipeline.experiment import format_table, run_experiment

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
    from mtpkdot.engine.distributed import rank

    if rank() != 0:
        return
    report = None
    try:
        from mtpkdot.report import write_report
    except ImportError:
        write_report = None
    if write_report is not None:
        report = write_report(run_dir)
    typer.echo(format_table(summary))
    typer.echo(f"\nresults: {run_dir / 'summary.csv'}")
    if report is not None:
        typer.echo(f"report:  {report}")
    typer.echo(f"run dir: {run_dir}  (per fold and stage: seed<s>/fold<k>/<stage>/metrics.csv, test.json)")
