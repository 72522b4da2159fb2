"""Read-only view of a run directory; every path comes from :mod:`mtpkdot.layout`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtpkdot.config import ConfigError, migrate
from mtpkdot.layout import METRICS, FoldDir, RunLayout

__all__ = ["FoldDir", "RunDir"]


class RunDir:
    """A finished (or partly finished) run: config, summary and the per-fold stage folders."""

    def __init__(self, path: str | Path):
        self.layout = RunLayout(path)
        self.path = self.layout.root
        if not self.path.is_dir():
            raise FileNotFoundError(f"run directory {self.path} does not exist")

    @property
    def summary_path(self) -> Path:
        return self.layout.summary

    @property
    def figures(self) -> Path:
        return self.layout.figures

    def config(self) -> dict[str, Any]:
        """The resolved config as a plain dict ({} when config.yaml is missing or unreadable)."""
        p = self.layout.config
        if not p.is_file():
            return {}
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            return {}
        if not isinstance(data, dict):
            return {}
        try:
            return migrate(data, str(p), warn=False)  # a run made before config version 2 reads the same
        except ConfigError:
            return {}

    def fold_dirs(self) -> list[FoldDir]:
        """Every ``seed<s>/fold<k>`` folder, sorted by (seed, fold)."""
        return self.layout.fold_dirs()

    def first_with(self, relpath: str) -> FoldDir | None:
        """The first (seed, fold) folder in which ``relpath`` exists: the figures use one fold."""
        for fd in self.fold_dirs():
            if (fd.path / relpath).exists():
                return fd
        return None

    def stages(self, fold: FoldDir) -> list[str]:
        """Stage folders of one fold that hold a metrics.csv."""
        return sorted(p.parent.name for p in fold.path.glob(f"*/{METRICS}"))
