"""What every stage of one fold needs: config, store, split, device, cached features, stage folders.

A stage is a folder ``runs/<exp>/seed<s>/fold<k>/<stage>/``. Its ``config.yaml`` holds the config
section the stage depends on (its own settings plus the hashes of the stages it builds on), so a
changed setting is detected at the stage it affects; ``done`` marks a finished stage and holds that
section's hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mtpkdot.atomic import atomic_write_text
from mtpkdot.config import Config
from mtpkdot.engine.checkpoint import check_config, config_hash

# data settings that say where things are, not what they are: moving a dataset keeps its results
LOCATION_KEYS = ("root", "annotations_root", "videos_root", "manifest", "store", "workers")


def plain(obj: Any) -> Any:
    """JSON round trip: what a section looks like after being written to and read from YAML."""
    return json.loads(json.dumps(obj, default=str))


@dataclass
class Dist:
    """This process's place in a multi-process run (rank 0 of 1 when single-process).

    Gradients are averaged by DistributedDataParallel (``stages.data_parallel``), not here.
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


@dataclass
class FoldContext:
    cfg: Config
    store: Any  # mtpkdot.data.Store
    split: dict[str, np.ndarray]
    run_dir: Path
    seed: int
    fold: int
    device: torch.device
    amp: bool = False
    dist: Dist = field(default_factory=Dist)
    _features: dict[str, torch.Tensor] = field(default_factory=dict)

    # ---- roles and folders -------------------------------------------------------------------
    @property
    def fold_dir(self) -> Path:
        return self.run_dir / f"seed{self.seed}" / f"fold{self.fold}"

    def stage_dir(self, stage: str) -> Path:
        return self.fold_dir / stage

    @property
    def prevalent(self) -> list[str]:
        return list(self.cfg.data.prevalent)

    @property
    def privileged(self) -> list[str]:
        return list(self.cfg.data.privileged)

    @property
    def order(self) -> list[str]:
        """The teacher's modality order: as listed in ``data.modalities``, prevalent and privileged only."""
        used = set(self.prevalent) | set(self.privileged)
        return [m for m in self.cfg.data.modalities if m in used]

    @property
    def task(self) -> Any:
        return self.store.task

    @property
    def write(self) -> bool:
        return self.dist.is_main

    # ---- config sections ---------------------------------------------------------------------
    def base_section(self) -> dict[str, Any]:
        data = {k: v for k, v in self.cfg.data.model_dump(mode="json").items() if k not in LOCATION_KEYS}
        split = {k: config_hash(sorted(int(i) for i in v)) for k, v in self.split.items()}
        return plain(
            {
                "data": data,
                "protocol": self.cfg.protocol.model_dump(mode="json"),
                "seed": self.seed,
                "fold": self.fold,
                "split": split,
            }
        )

    def section(self, stage: str) -> dict[str, Any]:
        """The config section stage ``stage`` depends on (upstream stages by hash)."""
        cfg = self.cfg
        base = config_hash(self.base_section())
        if stage.startswith("backbone_"):
            mod = stage[len("backbone_") :]
            sec: dict[str, Any] = {"base": base, "modality": cfg.data.modalities[mod].model_dump(mode="json")}
        elif stage == "features":
            sec = {"backbones": {m: config_hash(self.section(f"backbone_{m}")) for m in self.order}}
        elif stage == "teacher":
            sec = {
                "features": config_hash(self.section("features")),
                "teacher": cfg.teacher.model_dump(mode="json"),
            }
        elif stage == "tnet":
            sec = {
                "features": config_hash(self.section("features")),
                "tnet": cfg.tnet.model_dump(mode="json"),
            }
        elif stage == "adapters":
            sec = {
                "teacher": config_hash(self.section("teacher")),
                "adapters": cfg.adapters.model_dump(mode="json"),
            }
        elif stage.startswith("student_"):
            student = cfg.student.model_dump(mode="json")
            student.pop("methods")  # adding a method to a run must not invalidate the others
            sec = {
                "method": stage[len("student_") :],
                "student": student,
                "distill": cfg.distill.model_dump(mode="json"),
                "teacher": config_hash(self.section("adapters")),
                "tnet": config_hash(self.section("tnet")),
            }
            if cfg.student.finetune_backbone:
                sec["backbones"] = config_hash(self.section("features"))
        else:
            raise KeyError(f"unknown stage {stage!r}")
        return plain(sec)

    # ---- done markers ------------------------------------------------------------------------
    def is_done(self, stage: str) -> bool:
        """True when ``stage`` finished with this config; raises when it ran with another config."""
        d = self.stage_dir(stage)
        sec = self.section(stage)
        cfg_path = d / "config.yaml"
        if cfg_path.is_file():
            stored = yaml.safe_load(cfg_path.read_text())
            check_config(stored, sec, cfg_path)
        elif self.write:
            atomic_write_text(cfg_path, yaml.safe_dump(sec, sort_keys=False))
        return (d / "done").is_file()

    def mark_done(self, stage: str) -> None:
        if self.write:
            atomic_write_text(self.stage_dir(stage) / "done", config_hash(self.section(stage)) + "\n")

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        if self.write:
            atomic_write_text(path, json.dumps(plain(data), indent=2) + "\n")

    # ---- cached features ---------------------------------------------------------------------
    def features(self, mod: str) -> torch.Tensor:
        """Cached backbone features of every store sample (``N x d`` or ``N x L x d``), on the device."""
        if mod not in self._features:
            path = self.stage_dir("features") / f"{mod}.npy"
            self._features[mod] = torch.from_numpy(np.load(path)).to(self.device)
        return self._features[mod]

    def feature_dim(self, mod: str) -> int:
        return int(self.features(mod).shape[-1])
