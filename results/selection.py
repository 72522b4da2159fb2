"""Which epoch should a student keep? Selection rules measured on validation curves of the synthetic data.

    python results/selection.py --out runs/selection                  (demo config, 3 folds x 2 seeds)
    python results/selection.py --out runs/selection --analyse-only   (re-read finished runs)

Why: in published runs every student's validation metric peaked at epoch 1-2, i.e. model
selection kept a student that distillation had barely touched. This script trains every student of the
demo config (``configs/demo.yaml``: 20 synthetic subjects, 3 subject-wise folds) for a fixed number of
epochs with no early stopping, at each student learning rate given, and logs the validation metric of
every epoch (epoch 0 included). For the measurement only, it also logs the test metric of every epoch
(``val_test_<metric>`` columns; the pipeline itself tests the selected checkpoint once). Then it applies
each selection rule to the validation curves and reports, pooled over every method, seed and fold
(methods are never compared here, so the choice cannot favour one):

- how often the selected epoch is 1 or 2, and the mean selected epoch;
- optimism: the selected epoch's validation score minus its test score (a rule that picks a lucky
  validation spike has a large optimism);
- agreement: the Spearman correlation, over (method, seed, fold), of the selected epoch's validation
  and test scores;
- regret: the best test score of the curve minus the test score at the selected epoch.

Rules: ``raw`` (the best validation epoch, what ``fit`` did), ``min<m>`` (the best epoch from epoch m
on), ``smooth<w>`` (the best trailing mean over w validation epochs, from epoch w on; its weights are
those of the window's last epoch, so no checkpoint has to be kept back). The same rules as
``fit(select_after=m)`` and ``fit(select_window=w)`` (``student.select_after``, ``student.select_window``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
RULES = ("raw", "min3", "min5", "smooth3", "smooth5")


def run(
    out: Path,
    lr: float,
    epochs: int,
    seeds: list[int],
    data: Path,
    folds: list[int] | None,
    store: Path | None,
) -> Path:
    """The demo config with every student trained ``epochs`` epochs at ``lr``, test logged per epoch."""
    from mtpkdot.config import load_config
    from mtpkdot.pipeline import runner
    from mtpkdot.pipeline.experiment import run_experiment

    fit_trainable = runner.fit_trainable

    def with_test_curve(ctx, stage, t):  # noqa: ANN001, ANN202
        if stage.startswith("student_") or stage == "lower_bound":
            evaluate = t.evaluate

            def both(idx):  # noqa: ANN001, ANN202
                res = evaluate(idx)
                if idx is ctx.split["val"]:  # fit's validation call: add the test score of the same weights
                    res.update({f"test_{k}": v for k, v in evaluate(ctx.split["test"]).items()})
                return res

            t.evaluate = both
        return fit_trainable(ctx, stage, t)

    runner.fit_trainable = with_test_curve
    sets = [
        f"data.root={data}",
        f"student.lr={lr}",
        f"student.epochs={epochs}",
        "student.patience=null",
        "student.snapshots=false",
        "device=cpu",
    ] + ([f"data.store={store}"] if store else [])
    cfg = load_config(ROOT / "configs" / "demo.yaml", sets)
    run_dir = out / f"lr{lr:g}"
    run_experiment(cfg, run_dir, folds=folds, seeds=seeds, progress=False)
    return run_dir


def curves(run_dir: Path) -> list[dict]:
    """Every student's validation and test curve (epochs 1..E) and its epoch-0 validation score."""
    out = []
    for path in sorted(run_dir.glob("seed*/fold*/student_*/metrics.csv")):
        if not (path.parent / "done").is_file():  # still training: its curve is not complete
            continue
        m = pd.read_csv(path)
        metric = next(c[len("val_test_") :] for c in m.columns if c.startswith("val_test_"))
        trained = m[m["epoch"] >= 1]
        out.append(
            {
                "method": path.parent.name[len("student_") :],
                "run": f"{path.parts[-4]}/{path.parts[-3]}",
                "epoch0": float(m.loc[m["epoch"] == 0, f"val_{metric}"].iloc[0]),
                "val": trained[f"val_{metric}"].to_numpy(float),
                "test": trained[f"val_test_{metric}"].to_numpy(float),
            }
        )
    return out


def select(val: np.ndarray, rule: str) -> int:
    """0-based index of the epoch ``rule`` keeps (the first of ties, as ``fit`` keeps the first best)."""
    if rule == "raw":
        return int(np.argmax(val))
    if rule.startswith("min"):
        start = min(int(rule[3:]) - 1, len(val) - 1)
        return start + int(np.argmax(val[start:]))
    w = min(int(rule[len("smooth") :]), len(val))  # full windows only, as fit(select_window=w)
    smooth = np.array([val[i - w + 1 : i + 1].mean() for i in range(w - 1, len(val))])
    return w - 1 + int(np.argmax(smooth))


def analyse(curve_list: list[dict]) -> pd.DataFrame:
    rows = []
    for rule in RULES:
        picks = [select(c["val"], rule) for c in curve_list]
        v = np.array([c["val"][i] for c, i in zip(curve_list, picks, strict=True)])
        t = np.array([c["test"][i] for c, i in zip(curve_list, picks, strict=True)])
        best_t = np.array([c["test"].max() for c in curve_list])
        epochs = np.array(picks) + 1
        rows.append(
            {
                "rule": rule,
                "n": len(picks),
                "epoch 1-2 (%)": 100 * float(np.mean(epochs <= 2)),
                "mean epoch": float(epochs.mean()),
                "optimism": float(np.mean(v - t)),
                "agreement (Spearman)": float(spearmanr(v, t).statistic),
                "regret": float(np.mean(best_t - t)),
            }
        )
    return pd.DataFrame(rows)


def describe_curves(curve_list: list[dict]) -> str:
    """Validation-only description of the curves: where they start, peak and end."""
    e0 = np.mean([c["epoch0"] for c in curve_list])
    peak = np.mean([c["val"].max() for c in curve_list])
    last5 = np.mean([c["val"][-5:].mean() for c in curve_list])
    first2 = np.mean([c["val"][:2].mean() for c in curve_list])
    return (
        f"validation: epoch 0 {e0:.1f}, mean of epochs 1-2 {first2:.1f}, mean of the last 5 epochs "
        f"{last5:.1f}, mean peak {peak:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lrs", default="1e-3,1e-4", help="student learning rates, comma-separated")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--folds", default=None, help="only these folds (1-based), comma-separated")
    ap.add_argument("--store", type=Path, default=None, help="a prepared store to share (data.store)")
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args(argv)
    lrs = [float(x) for x in args.lrs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    for lr in lrs:
        run_dir = args.out / f"lr{lr:g}"
        if not args.analyse_only:
            folds = [int(x) for x in args.folds.split(",")] if args.folds else None
            run(args.out, lr, args.epochs, seeds, args.out / "data", folds, args.store)
        c = curves(run_dir)
        print(f"\n## student lr {lr:g}: {len(c)} curves ({args.epochs} epochs); {describe_curves(c)}")
        print(analyse(c).round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
