"""Reports of a run directory: the paper's tables (with paired tests), Figs. 4-7, training curves, sweeps.
The report reads run directories; it never runs anything (sweeps run in ``mtpkdot.pipeline.sweep``).

``write_report(run_dir)`` is called at the end of ``mtpkdot run`` / ``demo`` and by ``mtpkdot report``.
Heavy imports (pandas, matplotlib, scikit-learn) happen on first use, so importing this package is cheap.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report", "write_sweep_report"]


def write_report(run_dir: str | Path) -> Path:
    """Write report.md, report.html, figures/*.png and results.csv into ``run_dir``; return report.md."""
    from mtpkdot.report.build import write_report as _write

    return _write(run_dir)


def write_sweep_report(out_dir: str | Path) -> Path:
    """Write sweep.csv, sweep_report.md/.html and Fig. 7 for a sweep folder; return the markdown path."""
    from mtpkdot.report.sweep import write_sweep_report as _write

    return _write(out_dir)
