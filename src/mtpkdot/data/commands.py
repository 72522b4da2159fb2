"""CLI commands of the data side: ``mtpkdot synth biovid|affwild2 OUT`` and ``mtpkdot prepare CONFIG``.

Heavy imports stay inside the functions so that ``mtpkdot --help`` is fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import typer

synth_app = typer.Typer(
    no_args_is_help=True, help="Write an embedded synthetic dataset in a real on-disk layout."
)


def _synth_cfg(**kw: object):  # noqa: ANN202 - SynthConfig, imported lazily
    from mtpkdot.config import SynthConfig

    try:
        return SynthConfig(**kw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _write_synth(
    write: Callable[..., object],
    out: Path,
    cfg: object,
    workers: int,
    usage_errors: tuple[type[Exception], ...],
    what: str,
) -> None:
    """Run a synthetic writer; ``usage_errors`` (e.g. a non-empty ``out``) become a usage error."""
    t0 = time.time()
    try:
        write(out, cfg, workers=workers, progress=True)
    except usage_errors as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"wrote {what} to {out} in {time.time() - t0:.1f} s")


@synth_app.command("biovid")
def synth_biovid_cmd(
    out: Path = typer.Argument(..., help="output folder (absent or empty)"),
    subjects: int = typer.Option(20, help="number of subjects"),
    samples_per_class: int = typer.Option(10, help="samples per subject and class"),
    seed: int = typer.Option(0, help="random seed (the dataset is a function of all options)"),
    part: str = typer.Option("A", help="A: gsr ecg emg_trapezius; B: adds emg_corrugator emg_zygomaticus"),
    video_strength: float = typer.Option(1.0, help="strength of the facial pain response"),
    physio_strength: float = typer.Option(1.0, help="strength of the EDA / EMG pain response"),
    non_responders: float = typer.Option(0.2, help="share of subjects without a response (per modality)"),
    size: int = typer.Option(64, help="video frame side in pixels"),
    fps: int = typer.Option(25, help="video frames per second"),
    duration: float = typer.Option(5.5, help="sample length in seconds"),
    five_class: bool = typer.Option(False, "--five-class", help="write BL1, PA1..PA4 (default: BL1 and PA4)"),
    workers: int = typer.Option(1, help="parallel processes"),
) -> None:
    """Synthetic Biovid (official layout: samples.csv, video/, biosignals_filtered/)."""
    from mtpkdot.data.synthetic import synth_biovid

    cfg = _synth_cfg(
        subjects=subjects,
        samples_per_class=samples_per_class,
        seed=seed,
        part=part.upper(),
        video_strength=video_strength,
        physio_strength=physio_strength,
        non_responders=non_responders,
        size=size,
        fps=fps,
        duration=duration,
        five_class=five_class,
    )
    _write_synth(
        synth_biovid, out, cfg, workers, (FileExistsError,), f"synthetic Biovid ({subjects} subjects)"
    )


@synth_app.command("affwild2")
def synth_affwild2_cmd(
    out: Path = typer.Argument(..., help="output folder (absent or empty)"),
    videos: int = typer.Option(
        12, "--videos", "--subjects", help="number of raw videos (one holds a _left/_right pair)"
    ),
    seed: int = typer.Option(0, help="random seed"),
    video_strength: float = typer.Option(1.0, help="strength of the facial expression of valence/arousal"),
    audio_strength: float = typer.Option(
        1.0, "--audio-strength", "--physio-strength", help="strength of valence/arousal in the audio track"
    ),
    non_responders: float = typer.Option(
        0.2, help="share of poker faces and of silent persons (independent)"
    ),
    size: int = typer.Option(64, help="face crop side in pixels"),
    fps: int = typer.Option(25, help="frames per second"),
    duration: float = typer.Option(10.0, help="mean video length in seconds"),
    workers: int = typer.Option(1, help="parallel processes"),
) -> None:
    """Synthetic Affwild2 (ABAW layout: cropped_aligned/, annotations/, raw/ videos with audio)."""
    from mtpkdot.data.synthetic import synth_affwild2

    cfg = _synth_cfg(
        subjects=videos,
        seed=seed,
        video_strength=video_strength,
        physio_strength=audio_strength,
        non_responders=non_responders,
        size=size,
        fps=fps,
        duration=duration,
    )
    _write_synth(
        synth_affwild2,
        out,
        cfg,
        workers,
        (FileExistsError, ValueError),
        f"synthetic Affwild2 ({videos} videos)",
    )


def prepare_cmd(
    config: Path = typer.Argument(..., help="experiment config (YAML)"),
    set_: list[str] = typer.Option(
        None, "--set", help="dotted override, e.g. data.root=/data/biovid (repeatable)"
    ),
    out: Path = typer.Option(
        None,
        "--out",
        help="run directory, as for `mtpkdot run --out` (default: runs/<name>); the store goes to "
        "<run dir>/store unless data.store is set",
    ),
    workers: int = typer.Option(None, "--workers", help="parallel processes (default: data.workers)"),
    strict: bool = typer.Option(
        False, "--strict", help="stop at the first bad sample instead of skipping it"
    ),
) -> None:
    """Decode every sample once into a store of fixed-shape arrays (resumable; re-running does no work)."""
    from mtpkdot.cli import user_errors
    from mtpkdot.config import load_config
    from mtpkdot.data.prepare import prepare
    from mtpkdot.layout import default_run_dir, store_dir

    with user_errors(code=1):  # ConfigError and SampleError are ValueErrors
        cfg = load_config(config, set_ or [])
        # the store `mtpkdot run` with the same --out (or none) will open: one rule, mtpkdot.layout
        where = store_dir(cfg.data.store, out or default_run_dir(cfg.name))
        store = prepare(cfg, store_dir=where, workers=workers, strict=strict)
    typer.echo(repr(store))


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
    app.command("prepare")(prepare_cmd)
