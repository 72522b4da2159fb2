"""Forward + backward time and accuracy of the MT-PKDOT distillation term, ours vs the released recipe.

The term: similarity matrices, anchors, debiased Sinkhorn (p=2, blur=0.1), centroid; ``k`` anchors on
``dim``-d features, for each batch size ``b``.

* ours: ``RelationalOTLoss(k, centroid="similarity")`` with its defaults (scaling 0.5, anchors by
  ``torch.topk`` on the device, analytic diameter: no device-to-host copy);
* reference (the released code's recipe): anchors by ``numpy.argpartition`` on a CPU copy of the teacher
  similarity, geomloss ``SamplesLoss("sinkhorn", p=2, blur=0.1)`` with its defaults (scaling 0.5, diameter
  estimated from the data with ``.item()``), non-squared centroid distance.

Errors: each side's Sinkhorn value (float32, as timed) against the converged float64 debiased Sinkhorn
divergence between the same two point clouds that side built, computed here by a plain log-domain
Sinkhorn iterated to a marginal error below 1e-10 (independent of geomloss' epsilon-scaling).

``--json PATH`` writes ``{"<b>": {"ours_ms", "reference_ms", "ratio", "ours_rel_error",
"reference_rel_error"}}`` (ratio = ours / reference, medians). ``--scalings 0.5 0.7 0.9`` adds a table of
our loss at other ``scaling`` values (written to ``--scaling-json PATH`` when given).

Example: ``python benchmarks/bench_losses.py --json bench_losses.json`` (quick check:
``--sizes 64 --repeats 2``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from geomloss import SamplesLoss

from mtpkdot.distill import RelationalOTLoss, relational_clouds


# ---------------------------------------------------------------------------------------------
# the released recipe
def _reference_similarity(x: torch.Tensor) -> torch.Tensor:
    n = x.norm(dim=1, keepdim=True)
    return (x @ x.T) / (n @ n.T)  # unguarded, as released


def reference_clouds(
    student: torch.Tensor, teacher: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        s_t = _reference_similarity(teacher)
    s_s = _reference_similarity(student)
    idx = np.argpartition(s_t.detach().cpu().numpy(), k, axis=1)[:, :k]
    idx_t = torch.from_numpy(idx).to(student.device)
    x = (s_s - s_s.min()).gather(1, idx_t)
    y = (s_t - s_t.min()).gather(1, idx_t)
    return x, y, s_s, s_t


class ReferenceTerm:
    def __init__(self, k: int) -> None:
        self.k = k
        self.ot = SamplesLoss("sinkhorn", p=2, blur=0.1)

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y, s_s, s_t = reference_clouds(student, teacher, self.k)
        return {"ot": self.ot(x, y), "centroid": (s_t.mean(0) - s_s.mean(0)).norm()}


# ---------------------------------------------------------------------------------------------
# converged float64 Sinkhorn divergence (the accuracy oracle)
def _softmin(eps: float, cost: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return -eps * torch.logsumexp(h.unsqueeze(0) - cost / eps, dim=1)


def _entropic_ot(x: torch.Tensor, y: torch.Tensor, eps: float, symmetric: bool, tol: float = 1e-10) -> float:
    """OT_eps(a, b) = <a, f> + <b, g> for uniform weights and cost |x - y|^2 / 2, iterated to convergence."""
    cost = torch.cdist(x, y).pow(2) / 2
    n, m = cost.shape
    la = torch.full((n,), -math.log(n), dtype=x.dtype, device=x.device)
    lb = torch.full((m,), -math.log(m), dtype=x.dtype, device=x.device)
    f = torch.zeros(n, dtype=x.dtype, device=x.device)
    g = torch.zeros(m, dtype=x.dtype, device=x.device)
    e = max(float(cost.max()), eps)
    while True:  # anneal to eps (warm start), then iterate at eps until the marginals are met
        e = max(e * 0.7, eps)
        for it in range(200_000 if e == eps else 20):
            if symmetric:  # x == y: averaged fixed-point update, converges where alternation oscillates
                f = 0.5 * (f + _softmin(e, cost, la + f / e))
                g = f
            else:
                f = _softmin(e, cost, lb + g / e)
                g = _softmin(e, cost.T, la + f / e)
            if e == eps and it % 10 == 0:
                plan = torch.exp((f[:, None] + g[None, :] - cost) / e + la[:, None] + lb[None, :])
                err = float((plan.sum(1) - la.exp()).abs().sum() + (plan.sum(0) - lb.exp()).abs().sum())
                if err < tol:
                    break
        if e == eps:
            break
    return float((la.exp() * f).sum() + (lb.exp() * g).sum())


def converged_divergence(x: torch.Tensor, y: torch.Tensor, blur: float = 0.1) -> float:
    x, y = x.detach().double(), y.detach().double()
    eps = blur**2
    return _entropic_ot(x, y, eps, False) - 0.5 * (
        _entropic_ot(x, x, eps, True) + _entropic_ot(y, y, eps, True)
    )


# ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fns: list[Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Median ms of each function; calls are interleaved (order alternating) so load drift hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for r in range(repeats):
        order = list(range(len(fns)))
        if r % 2:
            order.reverse()
        for i in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[i]()
            _sync(device)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def step(term: Callable, student: torch.Tensor, teacher: torch.Tensor, gamma: float = 0.2) -> None:
    student.grad = None
    out = term(student, teacher)
    (0.2 * out["ot"] + gamma * out["centroid"]).backward()


def features(b: int, dim: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher features with class structure (as a trained teacher's), a noisier student."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, dim, generator=g)
    labels = torch.randint(0, 5, (b,), generator=g)
    teacher = torch.relu(centres[labels] + 0.8 * torch.randn(b, dim, generator=g))
    student = torch.relu(0.5 * centres[labels] + torch.randn(b, dim, generator=g))
    return student.to(device).requires_grad_(True), teacher.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on the CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scalings", type=float, nargs="*", default=[], help="also time our loss at these scalings"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--scaling-json", type=Path, default=None)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
        f"threads {torch.get_num_threads()}, k={args.k}, dim={args.dim}, repeats={args.repeats}"
    )
    ours = RelationalOTLoss(k=args.k, centroid="similarity")
    reference = ReferenceTerm(args.k)
    results: dict[str, dict[str, float]] = {}
    sweep: dict[str, dict[str, float]] = {}
    print(f"{'b':>5} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} {'ours err':>9} {'ref err':>9}")
    for b in args.sizes:
        s, t = features(b, args.dim, device, args.seed + b)
        ours_ms, ref_ms = time_ms(
            [lambda s=s, t=t: step(ours, s, t), lambda s=s, t=t: step(reference, s, t)],
            args.repeats,
            args.warmup,
            device,
        )
        with torch.no_grad():
            x, y, *_ = relational_clouds(s, t, args.k)
            ours_val = float(ours(s, t)["ot"])
            xr, yr, *_ = reference_clouds(s, t, args.k)
            ref_val = float(reference(s, t)["ot"])
        ours_true = converged_divergence(x, y)
        ref_true = converged_divergence(xr, yr)
        row = {
            "ours_ms": ours_ms,
            "reference_ms": ref_ms,
            "ratio": ours_ms / ref_ms,
            "ours_rel_error": abs(ours_val - ours_true) / abs(ours_true),
            "reference_rel_error": abs(ref_val - ref_true) / abs(ref_true),
        }
        results[str(b)] = row
        print(
            f"{b:>5} {ours_ms:>9.2f} {ref_ms:>9.2f} {row['ratio']:>6.2f} "
            f"{row['ours_rel_error']:>9.2e} {row['reference_rel_error']:>9.2e}"
        )
        for sc in args.scalings:
            term = RelationalOTLoss(k=args.k, centroid="similarity", scaling=sc)
            (ms,) = time_ms([lambda s=s, t=t, term=term: step(term, s, t)], args.repeats, args.warmup, device)
            with torch.no_grad():
                val = float(term(s, t)["ot"])
            sweep.setdefault(str(b), {})[f"{sc:g}"] = {
                "ms": ms,
                "rel_error": abs(val - ours_true) / abs(ours_true),
            }
            print(
                f"      scaling {sc:<6g} {ms:>9.2f} ms  rel error {abs(val - ours_true) / abs(ours_true):.2e}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.scaling_json and sweep:
        args.scaling_json.write_text(json.dumps(sweep, indent=1) + "\n")
        print(f"wrote {args.scaling_json}")


if __name__ == "__main__":
    main()
