"""The known-answer check of the synthetic Biovid world, without any distillation method.

For each value of ``data.synthetic.shared``: generate the demo's synthetic Biovid set, prepare it, make
subject-wise folds, and train the demo's video model (tiny3d, the demo's settings) twice per fold on the
same initial weights and batch order: the **lower bound** (labels only) and the **oracle** (labels plus
the sample's shared latent as an extra regression target, weight ``--aux-weight``). Both select their
epoch on the fold's validation subjects and are tested once on its test subjects. Prints and writes
(``<out>/oracle.json``) the test accuracy per fold, mean +- std over folds, and the paired difference
oracle - lower bound.

    python results/oracle.py --out runs/oracle            # shared 0 and 1, 5 folds x 3 seeds
    python results/oracle.py --out runs/oracle1 --shared 1 --set data.synthetic.subjects=40

Seed s is partition s, as in a run (repeated cross-validation); the paired differences are tested with
the corrected resampled t-test of :mod:`mtpkdot.report.stats` (the report's leading test).

The latent is recomputed from the generator (:func:`mtpkdot.data.synthetic.biovid_latent`), so the
dataset files are the ones ``mtpkdot synth`` writes (no extra file).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mtpkdot.config import load_config, shipped_configs
from mtpkdot.data import make_folds
from mtpkdot.data.prepare import prepare
from mtpkdot.data.splits import fold_indices
from mtpkdot.data.synthetic import BIOVID_INTENSITY, biovid_latent, ensure_generated
from mtpkdot.engine.seed import derive_seed, make_generator, seed_everything
from mtpkdot.models import LinearHead, build_backbone
from mtpkdot.pipeline.inputs import Normalizer, backbone_kwargs
from mtpkdot.report.stats import corrected_t_test, format_p


def latents(root: Path, manifest: pd.DataFrame, seed: int, shared: float) -> np.ndarray:
    """The shared latent (class intensity x its own draw) of every store sample, in store order."""
    rows = pd.read_csv(root / "samples.csv", sep="\t").set_index("sample_name")
    z = []
    for name in manifest["sample_id"]:
        r = rows.loc[name]
        k = int(str(name).rsplit("-", 1)[1]) - 1
        c = int(r["class_id"])
        z.append(BIOVID_INTENSITY[c] * biovid_latent(seed, int(r["subject_id"]), c, k))
    return np.asarray(z, dtype=np.float32)


def train_one(store, split, labels, z, mc, seed, fold, aux_weight):  # noqa: ANN001, ANN201
    """Train tiny3d (+ linear head, + latent head when ``aux_weight``) on the fold; test accuracy of the
    epoch with the best validation accuracy."""
    tc = mc.train
    arr = store.array("video")
    seed_everything(derive_seed(seed, fold, "oracle"))  # same init for both models (heads built after)
    kw = backbone_kwargs(mc.backbone, mc.kind, tuple(arr.shape[1:]), mc.backbone_kwargs)
    model = nn.ModuleDict(
        {
            "backbone": build_backbone(mc.backbone, out_dim=mc.feature_dim, **kw),
            "head": LinearHead(mc.feature_dim, 2),
            "latent": nn.Linear(mc.feature_dim, 1),
        }
    )
    norm, dev = Normalizer(mc.kind, 4), torch.device("cpu")
    params = [p for n, p in model.named_parameters() if aux_weight or not n.startswith("latent")]
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    tr = split["train"]
    z_all = torch.as_tensor((z - z[tr].mean()) / (z[tr].std() + 1e-6))  # standardised on training samples

    def forward(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        f = model["backbone"](norm(arr[np.sort(idx)], dev)[0])
        return model["head"](f), model["latent"](f).squeeze(-1)

    def accuracy(idx: np.ndarray) -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([forward(c)[0].argmax(-1) for c in np.array_split(np.sort(idx), 4)])
        return float((pred == y_all[np.sort(idx)]).float().mean() * 100)

    best, best_acc, since = None, -1.0, 0
    for epoch in range(tc.epochs):
        model.train()
        gen = make_generator(derive_seed(seed, fold, "oracle", epoch))
        order = torch.as_tensor(tr)[torch.randperm(len(tr), generator=gen)].numpy()
        for b in range(0, len(order) - tc.batch_size + 1, tc.batch_size):
            idx = np.sort(order[b : b + tc.batch_size])
            logits, zhat = forward(idx)
            loss = nn.functional.cross_entropy(logits, y_all[idx])
            if aux_weight:
                loss = loss + aux_weight * nn.functional.mse_loss(zhat, z_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = accuracy(split["val"])
        if acc > best_acc:
            best, best_acc, since = copy.deepcopy(model.state_dict()), acc, 0
        else:
            since += 1
            if since >= tc.patience:
                break
    model.load_state_dict(best)
    return accuracy(split["test"])


def run_world(out: Path, shared: float, args: argparse.Namespace) -> dict:  # noqa: ANN201
    sets = [f"data.root={out / f'data_shared{shared:g}'}", f"data.synthetic.shared={shared}", *args.set]
    cfg = load_config(shipped_configs()["demo"], sets)
    ensure_generated(cfg.data, "biovid")
    store = prepare(cfg, out / f"store_shared{shared:g}", workers=1, progress=False)
    z = latents(Path(cfg.data.root), store.manifest, cfg.data.synthetic.seed, shared)
    labels, mc = np.asarray(store.labels), cfg.data.modalities["video"]
    keys = ("seed", "fold", "lower_bound", "oracle", "n_train", "n_test")
    res: dict[str, list] = {k: [] for k in keys}
    for seed in args.seeds:
        folds = make_folds(store.manifest, "kfold", n_folds=args.folds, seed=seed)
        for k in range(args.folds):
            split = fold_indices(store, folds, k, val_share=cfg.protocol.val_subjects, seed=seed)
            lb = train_one(store, split, labels, z, mc, seed, k, 0.0)
            orc = train_one(store, split, labels, z, mc, seed, k, args.aux_weight)
            n_train = len(split["train"]) + len(split["val"])
            for key, v in zip(keys, (seed, k + 1, lb, orc, n_train, len(split["test"])), strict=True):
                res[key].append(v)
            print(
                f"shared={shared:g} seed {seed} fold {k + 1}: lower_bound {lb:.1f}  oracle {orc:.1f}",
                flush=True,
            )
    return res


def summary(res: dict[str, list]) -> dict[str, str]:
    lb, orc = np.asarray(res["lower_bound"]), np.asarray(res["oracle"])
    out = {m: f"{v.mean():.1f} +- {v.std(ddof=1):.1f}" for m, v in (("lower_bound", lb), ("oracle", orc))}
    ratio = float(np.mean(res["n_test"]) / np.mean(res["n_train"]))
    t = corrected_t_test(orc - lb, ratio)
    out["oracle - lower_bound"] = (
        f"{t.mean:+.1f} [{t.ci_low:+.1f}, {t.ci_high:+.1f}] (95 % interval, corrected t), p {format_p(t.p)}, "
        f"oracle ahead in {(orc > lb).sum()} of {len(lb)} folds ({(orc == lb).sum()} ties)"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (data, stores, oracle.json)")
    ap.add_argument("--shared", default="0,1", help="comma list of data.synthetic.shared values")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--seeds",
        default="0,1,2",
        type=lambda v: [int(x) for x in v.split(",")],
        help="comma list: partition, initial weights and batch order of each repetition",
    )
    ap.add_argument(
        "--set", action="append", default=[], help="config override of the demo config (repeatable)"
    )
    ap.add_argument("--aux-weight", type=float, default=1.0, help="weight of the latent's MSE (oracle)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0, out = time.time(), {}
    for s in [float(v) for v in args.shared.split(",")]:
        res = run_world(args.out, s, args)
        out[f"shared={s:g}"] = {"per_fold": res, "summary": summary(res)}
        print(json.dumps(out[f"shared={s:g}"]["summary"]))
    # the work folder is left out: a committed oracle.json must not name the folders of the machine that made it
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    out["settings"] = {**settings, "seconds": round(time.time() - t0)}
    (args.out / "oracle.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
