"""Figures of the report (paper Figs. 4-7 and training curves), drawn with matplotlib's Agg canvas.

Each function takes plain arrays or frames, writes one PNG atomically and returns its path. They use
``matplotlib.figure.Figure`` directly (no pyplot state, no display needed). Imports of matplotlib and
scikit-learn stay inside functions so that importing :mod:`mtpkdot.report` is cheap.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtpkdot.atomic import atomic_write

SNAPSHOT_KEYS = ("teacher", "student_0", "student_50", "student_75", "student_100")
SNAPSHOT_TITLES = ("teacher", "student 0 %", "student 50 %", "student 75 %", "student 100 %")
DPI = 110


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def similarity_evolution(rows: Mapping[str, Mapping[str, np.ndarray]], path: str | Path) -> Path:
    """Fig. 4: teacher and student similarity matrices at 0/50/75/100 % of student training.

    ``rows`` maps a row label (a method) to the arrays of its ``snapshots.npz``. Each row shares one
    color scale, so the student's drift towards the teacher's structure is visible.
    """
    fig = _figure(2.6 * len(SNAPSHOT_KEYS) + 0.8, 2.7 * len(rows))
    axes = fig.subplots(len(rows), len(SNAPSHOT_KEYS), squeeze=False)
    for r, (label, snaps) in enumerate(rows.items()):
        mats = [np.asarray(snaps[k], float) if k in snaps else None for k in SNAPSHOT_KEYS]
        present = [m for m in mats if m is not None]
        vmin = min(float(np.nanmin(m)) for m in present)
        vmax = max(float(np.nanmax(m)) for m in present)
        if vmax <= vmin:
            vmax = vmin + 1e-6
        image = None
        for c, (m, title) in enumerate(zip(mats, SNAPSHOT_TITLES, strict=True)):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if m is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            else:
                image = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(title if r == 0 else "", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=10)
        if image is not None:
            fig.colorbar(image, ax=list(axes[r]), shrink=0.85, label="cosine similarity")
    return _save(fig, path)


def tsne_embed(x: np.ndarray, random_state: int = 0) -> np.ndarray:
    """2-D t-SNE with PCA init; perplexity min(30, (n-1)/3) so that small folds still work."""
    from sklearn.manifold import TSNE

    n = len(x)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    tsne = TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=random_state
    )
    return tsne.fit_transform(np.asarray(x, np.float64))


def _pad(arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    dim = max(a.shape[1] for a in arrays)
    padded = any(a.shape[1] != dim for a in arrays)
    return [np.pad(a, ((0, 0), (0, dim - a.shape[1]))) for a in arrays], padded


def teacher_tsne(
    data: Mapping[str, np.ndarray], path: str | Path, random_state: int = 0, max_samples: int = 200
) -> tuple[Path, list[str]]:
    """Fig. 5: t-SNE of the teacher representations before and after alignment (Alg. 1, Eq. 1).

    ``data`` holds ``before_<teacher>``, ``after_<teacher>`` (n x d) and ``labels`` (n) from
    ``adapters/tsne.npz``. All teachers are embedded together, once before and once after alignment;
    top row colored by teacher, bottom row by class (or by the first target for regression).
    Returns the PNG path and notes (subsampling, zero padding of unequal dimensions).
    """
    names = [k[len("before_") :] for k in data if k.startswith("before_") and f"after_{k[7:]}" in data]
    if not names:
        raise ValueError("tsne.npz holds no before_<teacher>/after_<teacher> pair")
    labels = np.asarray(data["labels"]) if "labels" in data else None
    n = len(data[f"before_{names[0]}"])
    notes: list[str] = []
    idx = np.arange(n)
    if n > max_samples:  # t-SNE is quadratic-ish; a seeded subsample keeps the report fast
        idx = np.sort(np.random.default_rng(random_state).choice(n, max_samples, replace=False))
        notes.append(f"{max_samples} of {n} validation samples were drawn (seeded) for the t-SNE")
    if labels is not None:
        labels = labels[idx]
        if labels.ndim > 1:
            labels = labels.reshape(len(labels), -1)[:, 0]
    embeds = {}
    for phase in ("before", "after"):
        arrays = [np.asarray(data[f"{phase}_{t}"], float).reshape(n, -1)[idx] for t in names]
        arrays, padded = _pad(arrays)
        if padded:
            notes.append(
                f"{phase} alignment the teachers' features have different sizes; they were zero-padded "
                "to the largest, so distances across teachers there are only indicative"
            )
        embeds[phase] = tsne_embed(np.concatenate(arrays), random_state)
    teacher_of = np.repeat(np.arange(len(names)), len(idx))
    fig = _figure(10.5, 9.0)
    axes = fig.subplots(2, 2, squeeze=False)
    markers = "o^sDvP*X"
    import matplotlib

    tcolors = matplotlib.colormaps["tab10"]
    for c, phase in enumerate(("before", "after")):
        e = embeds[phase]
        ax = axes[0][c]
        for t, name in enumerate(names):
            sel = teacher_of == t
            ax.scatter(
                e[sel, 0], e[sel, 1], s=12, alpha=0.7, color=tcolors(t), marker=markers[t % 8], label=name
            )
        ax.set_title(f"{phase} alignment: by teacher", fontsize=10)
        ax.legend(fontsize=8, markerscale=1.5)
        ax = axes[1][c]
        if labels is None:
            ax.text(0.5, 0.5, "no labels in tsne.npz", ha="center", va="center", transform=ax.transAxes)
        else:
            lab = np.tile(labels, len(names))
            discrete = np.allclose(lab, np.round(lab)) and len(np.unique(lab)) <= 20
            if discrete:
                for v in np.unique(lab):
                    for t in range(len(names)):
                        sel = (lab == v) & (teacher_of == t)
                        ax.scatter(
                            e[sel, 0],
                            e[sel, 1],
                            s=12,
                            alpha=0.7,
                            color=tcolors(int(v) % 10),
                            marker=markers[t % 8],
                            label=f"class {int(v)}" if t == 0 else None,
                        )
                ax.legend(fontsize=8, markerscale=1.5, title="marker = teacher", title_fontsize=7)
            else:
                sc = ax.scatter(e[:, 0], e[:, 1], s=12, alpha=0.7, c=lab, cmap="coolwarm")
                fig.colorbar(sc, ax=ax, label="target")
        ax.set_title(f"{phase} alignment: by class", fontsize=10)
        for ax in (axes[0][c], axes[1][c]):
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path), notes


def selection_shares(counts: pd.DataFrame) -> pd.DataFrame:
    """Rows = folds, columns = teachers: share (%) of batches in which each teacher was selected."""
    totals = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(totals, axis=0) * 100.0


def teacher_selection(counts: pd.DataFrame, path: str | Path) -> Path:
    """Fig. 6: stacked bars, one per fold, of the share of batches in which each teacher was selected."""
    shares = selection_shares(counts).fillna(0.0)
    import matplotlib

    colors = matplotlib.colormaps["tab10"]
    fig = _figure(max(4.5, 1.1 * len(shares) + 2.5), 4.2)
    ax = fig.subplots()
    x = np.arange(len(shares))
    bottom = np.zeros(len(shares))
    for j, teacher in enumerate(shares.columns):
        vals = shares[teacher].to_numpy(float)
        ax.bar(x, vals, bottom=bottom, color=colors(j % 10), label=teacher, width=0.7)
        for i, v in enumerate(vals):
            if v >= 4.0:
                ax.text(x[i], bottom[i] + v / 2, f"{v:.0f}%", ha="center", va="center", fontsize=8)
        bottom += vals
    ax.set_xticks(x, [str(i) for i in shares.index], rotation=30 if len(shares) > 6 else 0)
    ax.set_ylabel("batches in which the teacher was selected (%)")
    ax.set_ylim(0, 100)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    ax.set_title("MT-PKDOT teacher selection per fold", fontsize=10)
    return _save(fig, path)


def training_curves(
    stages: Mapping[str, pd.DataFrame],
    path: str | Path,
    title: str,
    selected: Mapping[str, int] | None = None,
) -> Path:
    """Training curves: per stage (row), every unweighted loss term (left) and validation metric (right);
    ``selected`` (stage -> epoch) is marked on both panels of its row."""
    return _save(curves_figure(stages, title, selected or {}), path)


def curves_figure(stages: Mapping[str, pd.DataFrame], title: str, selected: Mapping[str, int]) -> Any:
    """The figure of :func:`training_curves`; the selected epoch is a dashed vertical line."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10.0, 2.8 * len(stages) + 0.4)
    axes = fig.subplots(len(stages), 2, squeeze=False)
    fig.suptitle(title, fontsize=11)
    for r, (name, df) in enumerate(stages.items()):
        x = df["epoch"].to_numpy() if "epoch" in df.columns else np.arange(len(df))
        for c, prefix in enumerate(("train_", "val_")):
            ax = axes[r][c]
            cols = [k for k in df.columns if k.startswith(prefix)]
            drawn = False
            for k in cols:
                y = pd.to_numeric(df[k], errors="coerce").to_numpy(float)
                if np.isfinite(y).any():
                    ax.plot(x, y, marker="o", ms=3, label=k[len(prefix) :])
                    drawn = True
            if name in selected:
                ax.axvline(
                    selected[name], color="0.35", ls="--", lw=1, label=f"selected: epoch {selected[name]}"
                )
            if not drawn:
                ax.text(0.5, 0.5, f"no {prefix}* column", ha="center", va="center", transform=ax.transAxes)
            else:
                values = np.concatenate([pd.to_numeric(df[k], errors="coerce").to_numpy(float) for k in cols])
                values = values[np.isfinite(values)]
                if (
                    prefix == "train_"
                    and len(values)
                    and (values > 0).all()
                    and values.max() > 50 * values.min()
                ):
                    ax.set_yscale("log")  # loss terms differ by orders of magnitude
            if drawn or name in selected:
                ax.legend(fontsize=7)
            ax.set_title(f"{name}: {'loss terms (unweighted)' if c == 0 else 'validation'}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
    return fig


def sweep_lines(table: pd.DataFrame, path: str | Path, metric_label: str) -> Path:
    """Fig. 7: metric vs batch size, one line per anchor count (one panel per centroid value).

    ``table`` has columns ``batch_size``, ``anchors``, ``mean``, ``std`` and optionally ``centroid``.
    """
    panels = list(dict.fromkeys(table["centroid"])) if "centroid" in table.columns else [None]
    fig = _figure(5.2 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, panel in zip(axes, panels, strict=True):
        sub = table if panel is None else table[table["centroid"] == panel]
        for anchors, grp in sub.groupby("anchors", sort=True):
            grp = grp.sort_values("batch_size")
            std = grp["std"].fillna(0.0).to_numpy(float)
            ax.errorbar(
                grp["batch_size"], grp["mean"], yerr=std, marker="o", capsize=3, label=f"{anchors} anchors"
            )
        sizes = sorted(sub["batch_size"].unique())
        if sizes and min(sizes) > 0 and max(sizes) / min(sizes) >= 4:
            ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size b")
        ax.set_ylabel(metric_label)
        ax.set_title("MT-PKDOT" + ("" if panel is None else f", centroid = {panel}"), fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)
