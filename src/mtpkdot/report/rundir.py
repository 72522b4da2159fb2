"""Read-only view of a run directory (layout: docs/internals.md, "Run directory")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_SEED = re.compile(r"seed(-?\d+)$")
_FOLD = re.compile(r"fold(\d+)$")


@dataclass(frozen=True)
class FoldDir:
    seed: int
    fold: int
    path: Path

    @property
    def label(self) -> str:
        return f"seed {self.seed}, fold {self.fold}"


class RunDir:
    """A finished (or partly finished) run: config, summary and the per-fold stage folders."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"run directory {self.path} does not exist")

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.csv"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def config(self) -> dict[str, Any]:
        """The resolved config as a plain dict ({} when config.yaml is missing or unreadable)."""
        p = self.path / "config.yaml"
        if not p.is_file():
            return {}
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            return {}
        return data if isinstance(data, dict) else {}

    def fold_dirs(self) -> list[FoldDir]:
        """Every ``seed<s>/fold<k>`` folder, sorted by (seed, fold)."""
        out = []
        for sd in self.path.glob("seed*"):
            ms = _SEED.match(sd.name)
            if not (ms and sd.is_dir()):
                continue
            for fd in sd.glob("fold*"):
                mf = _FOLD.match(fd.name)
                if mf and fd.is_dir():
                    out.append(FoldDir(int(ms.group(1)), int(mf.group(1)), fd))
        return sorted(out, key=lambda f: (f.seed, f.fold))

    def first_with(self, relpath: str) -> FoldDir | None:
        """The first (seed, fold) folder in which ``relpath`` exists: the figures use one fold."""
        for fd in self.fold_dirs():
            if (fd.path / relpath).exists():
                return fd
        return None

    def stages(self, fold: FoldDir) -> list[str]:
        """Stage folders of one fold that hold a metrics.csv."""
        return sorted(p.parent.name for p in fold.path.glob("*/metrics.csv"))
