"""mtpkdot: privileged knowledge distillation for multimodal affect recognition.

Implements MT-PKDOT (multi-teacher privileged knowledge distillation with optimal transport) and the
methods it is compared with. See README.md for the quick start and docs/ for the internals.

The Python API below does what the commands do (``mtpkdot run`` is :func:`run`, ...)::

    import mtpkdot

    cfg = mtpkdot.load_config("biovid_b", ["student.epochs=5"])
    summary = mtpkdot.run(cfg, "runs/mine", folds=[1], methods=["none", "mtpkdot"])
    bundle = mtpkdot.export("runs/mine", fold=1, method="mtpkdot", out="student.pt")
    rows = mtpkdot.predict(bundle, ["clip.mp4"])

Each function imports what it needs when called, so ``import mtpkdot`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from mtpkdot.config import Config, DistillConfig
    from mtpkdot.distill import Method, TeacherPool
    from mtpkdot.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "build_loss",
    "build_method",
    "export",
    "load_config",
    "predict",
    "run",
    "write_report",
]


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read and validate an experiment config: a YAML file or a shipped config's name
    (``mtpkdot config`` lists them), with dotted ``overrides`` such as ``"student.lr=1e-4"``."""
    from mtpkdot import plugins
    from mtpkdot.config import load_config as _load

    plugins.load()  # the method sections of distill are validated against the registered methods
    return _load(path, list(overrides))


def run(
    config: Config | str | Path,
    out: str | Path | None = None,
    *,
    folds: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
    amp: bool | None = None,
    report: bool = True,
) -> pd.DataFrame:
    """Run an experiment as ``mtpkdot run`` does and return its summary: one row per (seed, fold,
    method) with the test metrics, what ``summary.csv`` holds.

    ``config`` is a :class:`~mtpkdot.config.Config` or what :func:`load_config` reads; ``out`` is the
    run directory (default ``runs/<config name>``; an existing one resumes). ``folds``, ``methods`` and
    ``seeds`` narrow the run (default: the config's). With ``report`` the report is written at the end
    (by rank 0 under ``torchrun``)."""
    from mtpkdot import plugins
    from mtpkdot.config import Config
    from mtpkdot.dist import rank
    from mtpkdot.layout import default_run_dir
    from mtpkdot.pipeline.experiment import run_experiment

    plugins.load()
    cfg = config if isinstance(config, Config) else load_config(config)
    run_dir = Path(out) if out is not None else default_run_dir(cfg.name)
    summary = run_experiment(cfg, run_dir, folds=folds, methods=methods, seeds=seeds, device=device, amp=amp)
    if report and rank() == 0:
        from mtpkdot.report import write_report

        write_report(run_dir)
    return summary


def write_report(run_dir: str | Path) -> Path:
    """Write the report of a run directory (or the sweep report of a sweep folder) as ``mtpkdot
    report`` does; return the markdown file (the HTML one sits beside it).

    (Not named ``report``: importing the ``mtpkdot.report`` package would replace that attribute.)"""
    from mtpkdot.layout import RunLayout

    if not Path(run_dir).is_dir():
        raise NotADirectoryError(f"{run_dir} is not a directory")
    if RunLayout(run_dir).sweep_plan.is_file():
        from mtpkdot.report import write_sweep_report

        return write_sweep_report(run_dir)
    from mtpkdot.report import write_report

    return write_report(run_dir)


def export(run_dir: str | Path, fold: int, method: str, out: str | Path, seed: int | None = None) -> Path:
    """Write the student of ``method`` trained on ``fold`` (seed: the first one unless given) as a
    bundle file, as ``mtpkdot export`` does; return its path."""
    from mtpkdot.pipeline.bundle import export_bundle

    return export_bundle(run_dir, fold, method, out, seed=seed)


def predict(bundle: str | Path, inputs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Predict from the prevalent modality alone with a bundle from :func:`export`: one dict per
    input (class probabilities, or valence/arousal), as ``mtpkdot predict`` prints them."""
    from mtpkdot import plugins
    from mtpkdot.pipeline.bundle import predict as _predict

    plugins.load()
    return _predict(bundle, list(inputs))


def build_method(
    name: str,
    student: nn.Module,
    teacher_pool: TeacherPool | None,
    task: Task,
    cfg: DistillConfig | None = None,
) -> Method:
    """Build the registered distillation method ``name`` (``mtpkdot list`` shows them) for a student,
    its teacher pool (``None`` for the methods that need none) and the task."""
    from mtpkdot import plugins
    from mtpkdot.distill import build_method as _build

    plugins.load()
    return _build(name, student, teacher_pool, task, cfg)


def build_loss(name: str, **options: Any) -> Any:
    """The registered loss ``name`` (``mtpkdot list`` shows them) with its options, called as
    ``loss(student, teacher)``: e.g. ``build_loss("relational_ot", k=30)(student_feats, teacher_feats)``."""
    from mtpkdot import plugins
    from mtpkdot.distill import build_loss as _build

    plugins.load()
    return _build(name, **options)
