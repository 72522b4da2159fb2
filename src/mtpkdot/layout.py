"""The layout of a run directory, in one place (docs/internals.md, "Run directory").

Every path of a run (config, folds, store, per-fold stage folders, test results, feature cache,
summary, report, sweep files) is built here; the pipeline, the export bundle, the sweep, the report,
the CLI and the tests ask this module instead of joining strings. Folds are numbered from 1 in the run
directory (``fold1`` is the data side's fold 0).

A run directory::

    <run>/.lock  config.yaml  config.hash  folds_seed<s>.csv (or folds.csv)  store_meta.json  summary.csv
    <run>/store/                       (unless data.store names another folder)
    <run>/seed<s>/fold<k>/.lock  split.csv
    <run>/seed<s>/fold<k>/<stage>/     config.yaml done metrics.csv best.pt last.pt test.json ...
    <run>/report.md  report.html  results.csv  figures/
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mtpkdot.registry import METHODS

RUNS_ROOT = Path("runs")  # where `mtpkdot run/prepare` put a run when --out is not given

# the lock file of a folder one process writes at a time (mtpkdot.locks): the run directory (its shared
# files), each seed<s>/fold<k> cell (its stages), a store
LOCK = ".lock"

# files of a stage folder
STAGE_CONFIG = "config.yaml"
DONE = "done"
BEST = "best.pt"
LAST = "last.pt"
METRICS = "metrics.csv"
TENSORBOARD = "tensorboard"  # with `tensorboard: true`: the stage's event files (one TensorBoard run)
TEST = "test.json"
# artefacts one stage writes and the report, export or a later stage reads
FEATURE_META = "meta.json"  # in features/: the backbone checkpoint hash of each cached modality
TSNE = "tsne.npz"  # in adapters/
SNAPSHOTS = "snapshots.npz"  # in student_<method>/

# stage folder names that the report and export read (the stage graph itself is mtpkdot.pipeline.graph)
STUDENT_PREFIX = "student_"
BACKBONE_PREFIX = "backbone_"
CROSSFIT_PREFIX = "crossfit_"
TEACHER = "teacher"
LOWER_BOUND = "lower_bound"  # prevalent modalities alone, no T-Net: a row of summary.csv
FEATURES = "features"
ADAPTERS = "adapters"


# sweep folder
SWEEP_PLAN = "sweep.json"
SWEEP_CSV = "sweep.csv"
SWEEP_REPORT = "sweep_report.md"

_SEED = re.compile(r"seed(-?\d+)$")
_FOLD = re.compile(r"fold(\d+)$")


@dataclass(frozen=True)
class ReferenceRow:
    """A row of ``summary.csv`` that is not a distillation method, with what the tables show of it."""

    name: str
    label: str  # its description in the results tables
    short_name: str  # in the report's sentences
    order: int  # its place among the rows; each method declares its own (``Method.order``)


# the prevalent modalities alone come before every method, the multimodal teacher after
REFERENCE_ROWS = {
    row.name: row
    for row in (
        ReferenceRow(
            LOWER_BOUND,
            "Lower bound (prevalent modalities alone: no T-Net, no distillation)",
            "the lower bound",
            0,
        ),
        ReferenceRow(TEACHER, "Upper bound (multimodal teacher)", "the multimodal teacher", 10_000),
    )
}


def row_order(name: str) -> int | None:
    """The place of a row of ``summary.csv`` in every table: a reference row's, or the registered
    method's declared ``order``; None for a name that is neither (a method of an older run)."""
    if name in REFERENCE_ROWS:
        return REFERENCE_ROWS[name].order
    return METHODS.get(name).order if name in METHODS else None


def default_run_dir(name: str) -> Path:
    """``runs/<name>``: the run directory of a config when no --out is given."""
    return RUNS_ROOT / name


def store_dir(data_store: str | Path | None, run_dir: str | Path) -> Path:
    """The store of a run: ``data.store`` when set, else ``<run dir>/store`` (same rule for prepare and run)."""
    return Path(data_store) if data_store is not None else Path(run_dir) / "store"


def store_lock(store: str | Path) -> Path:
    """The lock file of a store, held while it is prepared or checked."""
    return Path(store) / LOCK


def feature_file(modality: str) -> str:
    """The cached features of one modality inside the ``features`` stage folder."""
    return f"{modality}.npy"


def student_feature_file(modality: str) -> str:
    """With ``features.crossfit``: the stage-1 backbone's features of every sample (the student's input)."""
    return f"{modality}_full.npy"


def crossfit_stage(modality: str, inner: int) -> str:
    """The backbone of ``modality`` trained without the training subjects of inner fold ``inner`` (1-based)."""
    return f"{CROSSFIT_PREFIX}{modality}_{inner}"


def student_stage(method: str) -> str:
    return f"{STUDENT_PREFIX}{method}"


def backbone_stage(modality: str) -> str:
    return f"{BACKBONE_PREFIX}{modality}"


@dataclass(frozen=True)
class FoldDir:
    """One ``seed<s>/fold<k>`` folder (``fold`` 1-based, as in the folder name)."""

    seed: int
    fold: int
    path: Path

    @property
    def label(self) -> str:
        return f"seed {self.seed}, fold {self.fold}"

    def stage(self, name: str) -> Path:
        return self.path / name

    @property
    def split_csv(self) -> Path:
        return self.path / "split.csv"

    @property
    def lock(self) -> Path:
        """Held by the process that trains this cell's stages."""
        return self.path / LOCK


class RunLayout:
    """Every path of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # ---- run-level files ---------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        """Held briefly by whoever writes the run's shared files (config, folds, summary, report)."""
        return self.root / LOCK

    @property
    def config_hash(self) -> Path:
        return self.root / "config.hash"

    @property
    def demo_data(self) -> Path:
        """Where ``mtpkdot demo`` writes its synthetic dataset."""
        return self.root / "data"

    def folds_file(self, seed: int | None) -> Path:
        """The subject partition of repetition ``seed`` (``folds_seed<s>.csv``, k-fold CV), or the one
        partition of a seed-independent scheme (``folds.csv``: LOSO, official splits) for ``None``."""
        return self.root / ("folds.csv" if seed is None else f"folds_seed{int(seed)}.csv")

    def folds_files(self) -> list[Path]:
        """Every persisted partition of the run, sorted (per-seed files, else the one ``folds.csv``)."""
        return sorted(self.root.glob("folds_seed*.csv")) or sorted(self.root.glob("folds.csv"))

    @property
    def store_meta(self) -> Path:
        """A copy of the store's meta.json, so ``export`` works after the store is deleted."""
        return self.root / "store_meta.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.csv"

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def store(self, data_store: str | Path | None) -> Path:
        return store_dir(data_store, self.root)

    # ---- folds and stages --------------------------------------------------------------------
    def fold(self, seed: int, fold: int) -> FoldDir:
        return FoldDir(int(seed), int(fold), self.root / f"seed{int(seed)}" / f"fold{int(fold)}")

    def stage_dir(self, seed: int, fold: int, stage: str) -> Path:
        return self.fold(seed, fold).stage(stage)

    def fold_dirs(self) -> list[FoldDir]:
        """Every existing ``seed<s>/fold<k>`` folder, sorted by (seed, fold)."""
        out = []
        for sd in self.root.glob("seed*"):
            ms = _SEED.match(sd.name)
            if not (ms and sd.is_dir()):
                continue
            for fd in sd.glob("fold*"):
                mf = _FOLD.match(fd.name)
                if mf and fd.is_dir():
                    out.append(FoldDir(int(ms.group(1)), int(mf.group(1)), fd))
        return sorted(out, key=lambda f: (f.seed, f.fold))

    def seeds_with_fold(self, fold: int) -> list[int]:
        return sorted({f.seed for f in self.fold_dirs() if f.fold == fold})

    def stage_dirs(self) -> list[Path]:
        """Every stage folder of every fold, sorted."""
        return sorted(p for f in self.fold_dirs() for p in f.path.iterdir() if p.is_dir())

    def test_jsons(self, stage: str = "*") -> list[Path]:
        """``test.json`` of every fold's ``stage`` (a glob pattern), sorted."""
        return sorted(p for f in self.fold_dirs() for p in f.path.glob(f"{stage}/{TEST}"))

    def check_is_run(self) -> None:
        """Raise a ValueError unless the folder holds some of a run's files (``config.yaml``,
        ``summary.csv`` or ``seed<s>/fold<k>`` folders): every command that reads a run refuses
        another folder alike, before writing anything into it."""
        if not (self.summary.is_file() or self.config.is_file() or self.fold_dirs()):
            raise ValueError(
                f"{self.root} is not a run directory: it holds no config.yaml, summary.csv or "
                "seed<s>/fold<k> folders (give the folder that `mtpkdot run` wrote, e.g. runs/<name>)"
            )

    # ---- sweeps ------------------------------------------------------------------------------
    @property
    def sweep_plan(self) -> Path:
        return self.root / SWEEP_PLAN

    @property
    def sweep_csv(self) -> Path:
        return self.root / SWEEP_CSV

    @property
    def sweep_report_md(self) -> Path:
        return self.root / SWEEP_REPORT

    def sweep_point(self, name: str) -> RunLayout:
        return RunLayout(self.root / name)
