"""Deployment: a student-only bundle and predictions from the prevalent modality alone.

``export_bundle`` copies, from one (seed, fold) of a run, the prevalent backbone(s) and their input
statistics, the frozen T-Nets and the student's fusion, plus the config subset needed to rebuild them
and to prepare raw inputs. Nothing of the teacher or of any privileged backbone goes into the bundle.
``predict`` accepts a raw video file (decoded and sampled with the bundle's preparation settings) or a
prepared ``.npy`` sample (one item or a batch) and returns class probabilities or valence/arousal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtpkdot import layout
from mtpkdot.atomic import atomic_torch_save
from mtpkdot.config import ModalityConfig
from mtpkdot.layout import RunLayout
from mtpkdot.signals.files import load_npy, require_file

FORMAT = "mtpkdot-student-bundle/1"
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def _modality(data: dict[str, Any]) -> ModalityConfig:
    # bundles exported before config version 2 also carry the modality's training settings
    return ModalityConfig.model_validate({k: v for k, v in data.items() if k != "train"})


def export_bundle(
    run_dir: str | Path, fold: int, method: str, out: str | Path, seed: int | None = None
) -> Path:
    """Write the student of ``method`` trained in ``seed``/``fold`` of ``run_dir`` as a bundle file."""
    import yaml

    from mtpkdot.config import config_from_dict
    from mtpkdot.engine.checkpoint import load_checkpoint

    out = Path(out)
    _check_out(out)
    run = RunLayout(run_dir)
    cfg_path = run.config
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {run_dir} is not a run directory")
    cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()), str(cfg_path))
    if seed is None:
        seeds = run.seeds_with_fold(fold)
        if not seeds:
            raise FileNotFoundError(f"{run.root} has no fold{fold} in any seed folder")
        seed = seeds[0]
    fold_dir = run.fold(seed, fold)
    stage_dir = fold_dir.stage(layout.student_stage(method))
    if not (stage_dir / layout.DONE).is_file():
        have = sorted(
            p.name for p in fold_dir.path.glob(layout.student_stage("*")) if (p / layout.DONE).is_file()
        )
        raise FileNotFoundError(f"{stage_dir} is not a finished student stage; finished: {have or 'none'}")

    student_state = load_checkpoint(stage_dir / layout.BEST)["modules"]["student"]
    fusion = {k[len("fusion.") :]: v for k, v in student_state.items() if k.startswith("fusion.")}
    tnets = {k[len("tnets.") :]: v for k, v in student_state.items() if k.startswith("tnets.")}
    finetuned = any(k.startswith("backbones.") for k in student_state)
    backbones: dict[str, Any] = {}
    norms: dict[str, Any] = {}
    for mod in cfg.data.prevalent:
        enc = load_checkpoint(fold_dir.stage(layout.backbone_stage(mod)) / layout.BEST)["modules"]["model"]
        if finetuned:
            prefix = f"backbones.{mod}."
            backbones[mod] = {k[len(prefix) :]: v for k, v in student_state.items() if k.startswith(prefix)}
        else:
            backbones[mod] = {k[len("backbone.") :]: v for k, v in enc.items() if k.startswith("backbone.")}
        norms[mod] = {"mean": enc.get("norm_mean"), "std": enc.get("norm_std")}
    used = set(cfg.data.prevalent) | set(cfg.data.privileged)
    order = [m for m in cfg.data.modalities if m in used]
    features = fold_dir.stage(layout.FEATURES)
    fdims = {m: int(np.load(features / layout.feature_file(m), mmap_mode="r").shape[-1]) for m in order}
    task, item_shapes = _store_facts(cfg, run)
    bundle = {
        "format": FORMAT,
        "method": method,
        "seed": seed,
        "fold": fold,
        "task": {"kind": task.kind, "num_outputs": task.num_outputs, "names": list(task.names)},
        "order": order,
        "prevalent": list(cfg.data.prevalent),
        "privileged": list(cfg.data.privileged),
        "feature_dims": fdims,
        "modalities": {m: cfg.data.modalities[m].model_dump(mode="json") for m in cfg.data.prevalent},
        "item_shapes": item_shapes,
        "fusion_name": cfg.student_fusion()[0],
        "fusion_kwargs": cfg.student_fusion()[1],
        "sequence_length": cfg.data.sequence_length,
        "tnet_hidden": list(cfg.tnet.hidden),
        "backbones": backbones,
        "norms": norms,
        "tnets": tnets,
        "fusion": fusion,
    }
    atomic_torch_save(bundle, out)
    return out


def _check_out(out: Path) -> None:
    """The bundle goes into an existing folder: a mistyped ``--out`` must not leave new folders
    behind (as ``cp`` and ``torch.save`` would refuse it); checked before any work."""
    if out.is_dir():
        raise ValueError(f"bundle path {out} is a folder; give a file name, e.g. {out / 'student.pt'}")
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write the bundle {out}: the folder {out.parent} does not exist; create it first"
        )


def _store_facts(cfg: Any, run: RunLayout) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """Task and per-sample input shapes of the prevalent modalities, from the store's meta.json or,
    when the store is gone, the copy the run keeps (``store_meta.json``)."""
    from mtpkdot.tasks import Task

    candidates = [run.store(cfg.data.store) / "meta.json", run.store_meta]
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        raise FileNotFoundError(
            f"export needs the task and input shapes of the run: neither {candidates[0]} (the prepared "
            f"store) nor {candidates[1]} exists"
        )
    meta = json.loads(source.read_text())
    missing = [m for m in cfg.data.prevalent if m not in meta.get("modalities", {})]
    if missing or "task" not in meta:
        raise ValueError(f"{source} does not describe this run (no task or no modality {missing})")
    shapes = {m: tuple(int(d) for d in meta["modalities"][m]["shape"]) for m in cfg.data.prevalent}
    return Task(**meta["task"]), shapes


class BundleModel(nn.Module):
    """The exported student: prevalent backbone(s) -> T-Nets -> fusion."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        super().__init__()
        from mtpkdot.models import TNet, build_backbone, build_fusion, input_kwargs, input_ndim, takes_seq_len
        from mtpkdot.models.student import Student
        from mtpkdot.pipeline.inputs import Normalizer

        if bundle.get("format") != FORMAT:
            raise ValueError(f"not an mtpkdot student bundle (format {bundle.get('format')!r})")
        self.bundle = bundle
        self.prevalent: list[str] = bundle["prevalent"]
        backbones: dict[str, nn.Module] = {}
        self.norms: dict[str, Normalizer] = {}
        for mod in self.prevalent:
            mc = _modality(bundle["modalities"][mod])
            kw = input_kwargs(mc.backbone, tuple(bundle["item_shapes"][mod]), mc.backbone_kwargs)
            net = build_backbone(mc.backbone, out_dim=mc.feature_dim, **kw)
            net.load_state_dict(bundle["backbones"][mod])
            backbones[mod] = net
            nd = input_ndim(mc.backbone)
            self.norms[mod] = Normalizer(
                mc.kind, nd, bundle["norms"][mod]["mean"], bundle["norms"][mod]["std"]
            )
        dims = bundle["feature_dims"]
        in_dim = sum(dims[m] for m in self.prevalent)
        tnets = {p: TNet(in_dim, dims[p], hidden=bundle["tnet_hidden"]) for p in bundle["privileged"]}
        kw = dict(bundle["fusion_kwargs"])
        import torch.nn as _nn

        if takes_seq_len(bundle["fusion_name"]):
            kw.setdefault("seq_len", bundle["sequence_length"])
        fusion = build_fusion(
            bundle["fusion_name"], [dims[m] for m in bundle["order"]], bundle["task"]["num_outputs"], **kw
        )
        fusion.load_state_dict(bundle["fusion"])
        tn = _nn.ModuleDict(tnets)
        tn.load_state_dict(bundle["tnets"])
        self.backbones = _nn.ModuleDict(backbones)
        self.student = Student(fusion, dict(tn.items()), bundle["order"], self.prevalent)
        self.eval()

    @torch.no_grad()
    def forward(self, raw: dict[str, np.ndarray]) -> torch.Tensor:
        feats = {}
        for mod in self.prevalent:
            x, lead = self.norms[mod](raw[mod], torch.device("cpu"))
            feats[mod] = self.backbones[mod](x).reshape(*lead, -1)
        outputs, _ = self.student(feats)
        return outputs


def load_bundle(path: str | Path) -> BundleModel:
    """Read a bundle with ``torch.load(weights_only=True)``: one holding other pickled objects is
    refused (:class:`~mtpkdot.engine.checkpoint.UnsafeFileError`) and nothing in it runs."""
    from mtpkdot.engine.checkpoint import UnsafeFileError, safe_torch_load

    path = Path(path)
    require_file(path, "bundle")
    try:
        content = safe_torch_load(path, "bundle")
    except UnsafeFileError:
        raise
    except Exception as exc:  # a torn file or not a torch file at all
        raise ValueError(f"bundle {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(content, dict):
        raise ValueError(f"bundle {path} is not an mtpkdot student bundle (a {type(content).__name__})")
    return BundleModel(content)


def read_input(model: BundleModel, path: str | Path) -> dict[str, np.ndarray]:
    """One input file -> a batch of raw items for the (single) prevalent modality."""
    path = Path(path)
    if len(model.prevalent) != 1:
        raise ValueError(f"predict takes one input per sample; this bundle needs {model.prevalent}: use .npz")
    mod = model.prevalent[0]
    shape = tuple(model.bundle["item_shapes"][mod])
    if not path.is_dir():  # a FIFO would block the reader, a missing file give numpy's words
        require_file(path, "input")
    if path.suffix == ".npy":
        arr = load_npy(path)
    elif path.suffix.lower() in VIDEO_SUFFIXES or path.is_dir():  # a video file or a folder of frames
        arr = _prepare_video(model, mod, path)
    else:
        raise ValueError(
            f"{path}: expected a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or a prepared .npy"
        )
    if arr.shape == shape:
        arr = arr[None]
    if tuple(arr.shape[1:]) != shape:
        raise ValueError(f"{path}: array of shape {arr.shape}; the bundle expects {shape} or N x {shape}")
    return {mod: arr}


def _prepare_video(model: BundleModel, mod: str, path: Path) -> np.ndarray:
    """Decode, crop and sample a clip with the same settings as ``prepare`` used for training."""
    # the data side's own per-video preparation (time window, TSN sampling, face crop, resize), so a
    # deployed clip is prepared exactly as the training clips were
    from mtpkdot.data.prepare import decode_video_for

    mc = _modality(model.bundle["modalities"][mod])
    return np.asarray(decode_video_for(Path(path), mc))


def predict_each(
    bundle: str | Path, inputs: list[str | Path]
) -> Iterator[tuple[Path, list[dict[str, Any]] | Exception]]:
    """``(input, its rows)`` per input file, in order; an input that cannot be read gives its error in
    place of the rows, and the inputs after it are still predicted."""
    model = load_bundle(bundle)
    for path in inputs:
        try:
            raw = read_input(model, path)
        except (ValueError, FileNotFoundError) as exc:  # one bad file; the others keep their answers
            yield Path(path), exc
            continue
        except OSError as exc:  # e.g. no permission to read it
            yield Path(path), ValueError(f"cannot read {path}: {exc.strerror or exc}")
            continue
        yield Path(path), _rows(model, path, raw)


def predict(bundle: str | Path, inputs: list[str | Path]) -> list[dict[str, Any]]:
    """Predictions for each input file: class probabilities or valence/arousal per clip; the first
    input that cannot be read raises."""
    results = []
    for _, rows in predict_each(bundle, inputs):
        if isinstance(rows, Exception):
            raise rows
        results.extend(rows)
    return results


def _rows(model: BundleModel, path: str | Path, raw: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One JSON-ready row per clip of one input."""
    task = model.bundle["task"]
    out = model(raw).float()
    results = []
    for i in range(out.shape[0]):
        o = out[i]
        entry: dict[str, Any] = {"input": str(path)}
        if raw[model.prevalent[0]].shape[0] > 1:
            entry["index"] = i
        if task["kind"] == "classification":
            probs = torch.softmax(o, dim=-1).tolist()
            entry["probabilities"] = dict(zip(task["names"], probs, strict=False))
            entry["prediction"] = (
                task["names"][int(torch.argmax(o))] if task["names"] else int(torch.argmax(o))
            )
        else:
            names = task["names"] or [f"output{j}" for j in range(o.shape[-1])]
            for j, name in enumerate(names):
                v = o[..., j]
                entry[name] = v.tolist() if v.dim() else float(v)
        results.append(entry)
    return results
