"""The data commands: ``mtpkdot synth biovid|affwild2 OUT`` and ``mtpkdot prepare CONFIG``.

The synth options are generated from :class:`~mtpkdot.config.SynthConfig`: its fields give the names,
types, defaults and help, so a default lives in one place. Heavy imports (numpy, the renderers) stay
inside the functions so that ``mtpkdot --help`` is fast.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mtpkdot.cli.common import log_to_stderr, out_option, set_option, wait_option
from mtpkdot.config import SYNTH_DEFAULTS, SynthConfig

synth_app = typer.Typer(
    no_args_is_help=True, help="Write an embedded synthetic dataset in a real on-disk layout."
)

# Per dataset: the SynthConfig fields it uses -> (extra option names, help where its wording differs).
BIOVID_OPTIONS: dict[str, tuple[list[str], str | None]] = {
    name: ([], None)
    for name in (
        "subjects",
        "samples_per_class",
        "seed",
        "part",
        "video_strength",
        "physio_strength",
        "non_responders",
        "size",
        "fps",
        "duration",
        "five_class",
        "shared",
    )
}
BIOVID_OPTIONS["five_class"] = (["--five-class"], "write BL1, PA1..PA4 (default: BL1 and PA4)")
# A default of the command alone: `mtpkdot synth affwild2` writes 12 videos unless told otherwise (a
# config's synthetic_affwild2 without a data.synthetic section keeps SynthConfig's 20).
CLI_DEFAULTS: dict[str, dict[str, Any]] = {"biovid": {}, "affwild2": {"subjects": 12}}
AFFWILD2_OPTIONS: dict[str, tuple[list[str], str | None]] = {
    "subjects": (["--videos", "--subjects"], "number of raw videos (one holds a _left/_right pair)"),
    "seed": ([], "random seed"),
    "video_strength": ([], "strength of the facial expression of valence/arousal"),
    "physio_strength": (
        ["--audio-strength", "--physio-strength"],
        "strength of valence/arousal in the audio track",
    ),
    "non_responders": ([], "share of poker faces and of silent persons (independent)"),
    "size": ([], "face crop side in pixels"),
    "fps": ([], "frames per second"),
    "duration": ([], "mean video length in seconds"),
}


def _option_type(name: str) -> type:
    annotation = SynthConfig.model_fields[name].annotation
    return annotation if annotation in (int, float, bool) else str  # part: "A" | "B", upper-cased later


def _synth_parameters(kind: str, options: dict[str, tuple[list[str], str | None]]) -> list[inspect.Parameter]:
    """``OUT``, one option per SynthConfig field of ``options`` (default: SynthConfig's for ``kind``)
    and ``--workers``, as keyword parameters typer reads like a written signature."""
    defaults = SynthConfig(**{**SYNTH_DEFAULTS[kind], **CLI_DEFAULTS[kind]})
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            "out",
            keyword,
            default=typer.Argument(..., help="output folder (absent or empty)"),
            annotation=Path,
        )
    ]
    for name, (decls, help_) in options.items():
        field = SynthConfig.model_fields[name]
        option = typer.Option(getattr(defaults, name), *decls, help=help_ or field.description)
        params.append(inspect.Parameter(name, keyword, default=option, annotation=_option_type(name)))
    workers = typer.Option(1, help="parallel processes")
    params.append(inspect.Parameter("workers", keyword, default=workers, annotation=int))
    return params


def _synth_command(
    kind: str,
    options: dict[str, tuple[list[str], str | None]],
    write: Callable[[], Callable[..., object]],
    usage_errors: tuple[type[Exception], ...],
    what: str,
    doc: str,
) -> Callable[..., None]:
    """A ``mtpkdot synth KIND`` command: its options from SynthConfig, ``write()`` the (lazily
    imported) writer; ``usage_errors`` (e.g. a non-empty ``out``) become a usage error."""

    def command(out: Path, workers: int, **values: Any) -> None:
        if "part" in values:
            values["part"] = values["part"].upper()
        try:
            cfg = SynthConfig(**{**SYNTH_DEFAULTS[kind], **values})
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        t0 = time.time()
        try:
            write()(out, cfg, workers=workers, progress=True)
        except usage_errors as exc:
            raise typer.BadParameter(str(exc)) from None
        typer.echo(f"wrote {what.format(n=cfg.subjects)} to {out} in {time.time() - t0:.1f} s")

    params = _synth_parameters(kind, options)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command


def _biovid_writer() -> Callable[..., object]:
    from mtpkdot.data.synthetic import synth_biovid

    return synth_biovid


def _affwild2_writer() -> Callable[..., object]:
    from mtpkdot.data.synthetic import synth_affwild2

    return synth_affwild2


synth_app.command("biovid")(
    _synth_command(
        "biovid",
        BIOVID_OPTIONS,
        _biovid_writer,
        (FileExistsError,),
        "synthetic Biovid ({n} subjects)",
        "Synthetic Biovid (official layout: samples.csv, video/, biosignals_filtered/).",
    )
)
synth_app.command("affwild2")(
    _synth_command(
        "affwild2",
        AFFWILD2_OPTIONS,
        _affwild2_writer,
        (FileExistsError, ValueError),
        "synthetic Affwild2 ({n} videos)",
        "Synthetic Affwild2 (ABAW layout: cropped_aligned/, annotations/, raw/ videos with audio).",
    )
)


def prepare_cmd(
    config: Path = typer.Argument(..., help="experiment config (YAML)"),
    set_: list[str] = set_option(),
    out: Path = out_option(),
    workers: int = typer.Option(None, "--workers", help="parallel processes (default: data.workers)"),
    strict: bool = typer.Option(
        False, "--strict", help="stop at the first bad sample instead of skipping it"
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="check a finished store's arrays against their recorded checksums too, not only their "
        "sizes (reads the whole store); a damaged array is rebuilt",
    ),
    wait: bool = wait_option("the store"),
) -> None:
    """Decode every sample once into a store of fixed-shape arrays (resumable; re-running does no work).

    The store goes to <run dir>/store (the one `mtpkdot run` with the same --out opens) unless
    data.store is set."""
    from mtpkdot.config import load_config
    from mtpkdot.data.prepare import prepare
    from mtpkdot.layout import default_run_dir, store_dir

    log_to_stderr()
    cfg = load_config(config, set_)
    # the store `mtpkdot run` with the same --out (or none) will open: one rule, mtpkdot.layout
    where = store_dir(cfg.data.store, out or default_run_dir(cfg.name))
    store = prepare(cfg, store_dir=where, workers=workers, strict=strict, verify=verify, wait=wait)
    typer.echo(repr(store))


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
    app.command("prepare")(prepare_cmd)
