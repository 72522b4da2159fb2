"""What every stage of one fold needs: config, store, split, device, cached features, stage folders.

A stage is a folder ``runs/<exp>/seed<s>/fold<k>/<stage>/`` (``mtpkdot.layout``). Its ``config.yaml``
holds the config section the stage depends on (its own settings plus the hashes of the stages it
builds on, declared in ``mtpkdot.pipeline.graph``), so a
changed setting is detected at the stage it affects; ``done`` marks a finished stage and holds that
section's hash, the hashes of the files the stage wrote and of the stages it read
(:mod:`mtpkdot.pipeline.marker`): a stage whose files went missing or changed, or whose input
changed, is trained again.

The graph sits above the stage code and the runner, which read sections through the context, so the
context does not import it: whoever builds a :class:`FoldContext` hands it the graph's section function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mtpkdot.atomic import atomic_write_text
from mtpkdot.config import Config
from mtpkdot.engine.checkpoint import (
    ConfigMismatchError,
    check_config,
    config_hash,
    file_hash,
    load_checkpoint,
)
from mtpkdot.layout import (
    BEST,
    DONE,
    FEATURES,
    LAST,
    STAGE_CONFIG,
    RunLayout,
    feature_file,
    student_feature_file,
)
from mtpkdot.pipeline.marker import Marker

log = logging.getLogger(__name__)

# data settings that say where things are, not what they are: moving a dataset keeps its results
LOCATION_KEYS = ("root", "annotations_root", "videos_root", "manifest", "store", "workers")


def plain(obj: Any) -> Any:
    """JSON round trip: what a section looks like after being written to and read from YAML."""
    return json.loads(json.dumps(obj, default=str))


@dataclass
class Dist:
    """This process's place in a multi-process run (rank 0 of 1 when single-process).

    Gradients are averaged by DistributedDataParallel (``runner.data_parallel``), not here.
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
    """One (seed, fold) of a run. ``graph_section(ctx, stage)``: the config section ``stage`` depends on
    (``mtpkdot.pipeline.graph.section``); ``graph_section(ctx, stage, v1=True)``: the same settings as
    config version 1 wrote them."""

    cfg: Config
    store: Any  # mtpkdot.data.Store
    split: dict[str, np.ndarray]
    run_dir: Path
    seed: int
    fold: int
    device: torch.device
    amp: bool = False
    dist: Dist = field(default_factory=Dist)
    graph_section: Callable[..., dict[str, Any]] = field(kw_only=True)
    _features: dict[str, torch.Tensor] = field(default_factory=dict)

    # ---- roles and folders -------------------------------------------------------------------
    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def fold_dir(self) -> Path:
        return self.layout.fold(self.seed, self.fold).path

    def stage_dir(self, stage: str) -> Path:
        return self.layout.stage_dir(self.seed, self.fold, stage)

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
        """The config section stage ``stage`` depends on (declared in :mod:`mtpkdot.pipeline.graph`)."""
        return self.graph_section(self, stage)

    def recorded_section(self, stage: str) -> dict[str, Any]:
        """The section the folder of ``stage`` is checked against: :meth:`section`, or, for a folder
        written before config version 2 with the same settings, that folder's own (version-1) form,
        so its ``done``, checkpoints and resume stay valid without retraining."""
        sec = self.section(stage)
        path = self.stage_dir(stage) / STAGE_CONFIG
        if not path.is_file():
            return sec
        stored = config_hash(yaml.safe_load(path.read_text()))
        if stored != config_hash(sec):
            # only settings version 1 could express can have been written by it
            old = self.graph_section(self, stage, v1=True) if self.cfg.v1_expressible() else None
            if old is not None and stored == config_hash(old):
                return old
        return sec

    # ---- done markers ------------------------------------------------------------------------
    def is_done(self, stage: str, outputs: Sequence[str] = (), inputs: Sequence[str] = ()) -> bool:
        """True when ``stage`` finished with this config, its ``outputs`` (file names in its folder)
        are the files its marker records and its ``inputs`` (upstream stages) are unchanged; raises
        when it ran with another config. A finished stage that fails the check loses its marker and
        checkpoints, so it is trained again from the start."""
        d = self.stage_dir(stage)
        sec = self.recorded_section(stage)
        cfg_path = d / STAGE_CONFIG
        if cfg_path.is_file():
            stored = yaml.safe_load(cfg_path.read_text())
            check_config(stored, sec, cfg_path)
        elif self.write:
            atomic_write_text(cfg_path, yaml.safe_dump(sec, sort_keys=False))
        if not (d / DONE).is_file():
            return False
        problem = self._done_problem(stage, outputs, inputs)
        self.dist.barrier()  # every rank has read the marker before rank 0 removes it
        if problem is None:
            return True
        log.warning("%s: %s; training it again", d, problem)
        if self.write:
            for name in (DONE, BEST, LAST):
                (d / name).unlink(missing_ok=True)
        self.dist.barrier()
        return False

    def _done_problem(self, stage: str, outputs: Sequence[str], inputs: Sequence[str]) -> str | None:
        """Why the finished ``stage`` cannot be used as it is (None: it can)."""
        d = self.stage_dir(stage)
        try:
            marker = Marker.parse((d / DONE).read_text())
        except ValueError as exc:
            return f"its done marker cannot be read ({exc})"
        missing = [name for name in outputs if not (d / name).is_file()]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
        if marker.legacy:
            return self._check_legacy(stage, outputs, inputs)
        for name in outputs:
            if marker.outputs.get(name) != file_hash(d / name):
                return f"{name} is not the file its done marker records (changed or truncated)"
        for up in inputs:
            if marker.inputs.get(up) != self._fingerprint(up):
                return f"the stage it builds on, {up}, changed after it ran"
        return None

    def _check_legacy(self, stage: str, outputs: Sequence[str], inputs: Sequence[str]) -> str | None:
        """A marker of a run before outputs were recorded: its checkpoints must load; then the
        hashes of its outputs and inputs are recorded, as a run today would have."""
        d = self.stage_dir(stage)
        for name in outputs:
            if name.endswith(".pt"):
                try:
                    load_checkpoint(d / name, self.recorded_section(stage))
                except ConfigMismatchError:
                    raise
                except RuntimeError:
                    return f"{name} cannot be read"
        self.mark_done(stage, outputs, inputs)
        return None

    def has_old_marker(self, stage: str) -> bool:
        """Whether ``stage`` finished in a run from before markers recorded outputs and inputs."""
        done = self.stage_dir(stage) / DONE
        try:
            return done.is_file() and Marker.parse(done.read_text()).legacy
        except ValueError:
            return False

    def _fingerprint(self, stage: str) -> str | None:
        done = self.stage_dir(stage) / DONE
        return file_hash(done) if done.is_file() else None

    def mark_done(self, stage: str, outputs: Sequence[str] = (), inputs: Sequence[str] = ()) -> None:
        """Write ``stage``'s marker: its section's hash, and those of its ``outputs`` and ``inputs``."""
        if not self.write:
            return
        d = self.stage_dir(stage)
        marker = Marker(
            config_hash(self.recorded_section(stage)),
            {name: file_hash(d / name) for name in outputs},
            {up: str(self._fingerprint(up)) for up in inputs},
        )
        atomic_write_text(d / DONE, marker.text())

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        if self.write:
            atomic_write_text(path, json.dumps(plain(data), indent=2) + "\n")

    # ---- cached features ---------------------------------------------------------------------
    def features(self, mod: str) -> torch.Tensor:
        """Cached backbone features of every store sample (``N x d`` or ``N x L x d``), on the device."""
        if mod not in self._features:
            path = self.stage_dir(FEATURES) / feature_file(mod)
            self._features[mod] = torch.from_numpy(np.load(path)).to(self.device)
        return self._features[mod]

    def student_features(self, mod: str) -> torch.Tensor:
        """The student's own input features of a prevalent modality: the stage-1 backbone's features of
        every sample (with ``features.crossfit`` the teacher side's training rows come from other backbones)."""
        if not self.cfg.features.crossfit:
            return self.features(mod)
        key = f"{mod}/student"
        if key not in self._features:
            path = self.stage_dir(FEATURES) / student_feature_file(mod)
            self._features[key] = torch.from_numpy(np.load(path)).to(self.device)
        return self._features[key]

    def feature_dim(self, mod: str) -> int:
        return int(self.features(mod).shape[-1])
