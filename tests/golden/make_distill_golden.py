"""Regenerate ``tests/golden/distill_golden.json``: regression values of the distillation core.

Run ``python tests/golden/make_distill_golden.py`` from the repository root, only after an intentional
change of a loss (and say why in the commit). The JSON holds the inputs (rounded to 6 decimals, so they
are exact in JSON) and the float64 outputs of ``compute``; ``tests/test_distill_golden.py`` recomputes
them with the current code and compares. The values were checked independently where an oracle exists
(POT for the Sinkhorn divergence, torchmetrics for CCC, numpy for the rest: see the other tests); here
they only guard against silent changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

PATH = Path(__file__).with_name("distill_golden.json")


def make_inputs(seed: int = 2024) -> dict[str, Any]:
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 1.0, shift: float = 0.0) -> list:
        return np.round(rng.normal(size=shape) * scale + shift, 6).tolist()

    return {
        "student": r(10, 5),
        "teacher": r(10, 7, shift=0.3),
        "teacher_same_dim": r(10, 5),
        "pred": r(12, 2, scale=0.5),
        "target": r(12, 2, scale=0.4, shift=0.1),
        "logits_s": r(6, 3, scale=2.0),
        "logits_t": r(6, 3, scale=2.0),
        "labels": rng.integers(0, 3, size=6).tolist(),
        "k": 3,
    }


def compute(inp: dict[str, Any]) -> dict[str, Any]:
    from mtpkdot.distill import (
        RelationalOTLoss,
        SinkhornLoss,
        alignment_loss,
        ccc,
        ccc_loss,
        centroid_loss,
        cosine_loss,
        kl_loss,
        mse_loss,
        relational_clouds,
        select_anchors,
        similarity_matrix,
    )
    from mtpkdot.tasks import Task

    def t(key: str) -> torch.Tensor:
        return torch.tensor(inp[key], dtype=torch.float64)

    s, te, te5 = t("student"), t("teacher"), t("teacher_same_dim")
    pred, target = t("pred"), t("target")
    ls, lt = t("logits_s"), t("logits_t")
    labels = torch.tensor(inp["labels"])
    k = inp["k"]
    x, y, *_ = relational_clouds(s, te, k)
    rel = RelationalOTLoss(k=k, centroid="similarity")(s, te)
    rel_f = RelationalOTLoss(k=k, centroid="features", scaling=0.9)(s, te5)
    rel_bound = RelationalOTLoss(k=k, diameter="bound")(s, te)  # the accelerator schedule
    f = float
    return {
        "similarity_teacher": similarity_matrix(te).tolist(),
        "anchors_teacher": select_anchors(similarity_matrix(te), k).tolist(),
        "sinkhorn_default": f(SinkhornLoss()(x, y)),
        "sinkhorn_scaling_0.9": f(SinkhornLoss(scaling=0.9)(x, y)),
        "sinkhorn_raw": f(SinkhornLoss(debias=False)(x, y)),
        "sinkhorn_p1": f(SinkhornLoss(p=1)(x, y)),
        "relational_ot": f(rel["ot"]),
        "relational_centroid_similarity": f(rel["centroid"]),
        "relational_ot_bound": f(rel_bound["ot"]),
        "relational_ot_scaling_0.9": f(rel_f["ot"]),
        "relational_centroid_features": f(rel_f["centroid"]),
        "ccc": ccc(pred, target).tolist(),
        "ccc_loss": f(ccc_loss(pred, target)),
        "cosine_loss": f(cosine_loss(s, te5)),
        "mse_loss": f(mse_loss(s, te5)),
        "kl_loss_T4": f(kl_loss(ls, lt, 4.0)),
        "alignment_loss": f(alignment_loss([s, 2 * te5], te5 + 0.5)),
        "centroid_similarity": f(centroid_loss(s, te)),
        "centroid_features": f(centroid_loss(s, te5, space="features")),
        "task_ce": f(Task("classification", 3).loss(ls, labels)),
        "task_ccc": f(Task.from_name("va").loss(pred, target)),
    }


def main() -> None:
    inputs = make_inputs()
    data = {
        "about": "regression values of mtpkdot.distill (float64); regenerate with "
        "python tests/golden/make_distill_golden.py",
        "torch": torch.__version__,
        "inputs": inputs,
        "outputs": compute(inputs),
    }
    PATH.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
