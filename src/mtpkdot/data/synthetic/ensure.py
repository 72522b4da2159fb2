"""The synthetic readers' first step: generate into ``data.root`` when it is missing or empty."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mtpkdot.config import SYNTH_DEFAULTS, SynthConfig
from mtpkdot.data.synthetic.affwild2 import synth_affwild2
from mtpkdot.data.synthetic.biovid import synth_biovid

log = logging.getLogger("mtpkdot.data.synthetic")


def ensure_generated(data_cfg: Any, kind: str) -> Path:
    """Generate into ``data.root`` when it is missing or empty (with ``data.synthetic`` settings)."""
    import warnings

    if data_cfg.root is None:
        raise ValueError(f"data.root must be set for dataset 'synthetic_{kind}' (where to generate it)")
    root = Path(data_cfg.root)
    cfg = data_cfg.synthetic or SynthConfig(**SYNTH_DEFAULTS[kind])
    if not root.exists() or not any(root.iterdir()):
        gen = synth_biovid if kind == "biovid" else synth_affwild2
        log.info("generating the synthetic %s data into %s", kind, root)
        gen(root, cfg, workers=data_cfg.workers, progress=True)
    else:
        stamp = root / "synth.json"
        if stamp.is_file():
            old = json.loads(stamp.read_text())
            old.pop("kind", None)
            if old != cfg.model_dump(mode="json"):
                warnings.warn(
                    f"{root} was generated with other synthetic settings than data.synthetic; using it as is "
                    "(delete the folder to regenerate)",
                    stacklevel=2,
                )
    return root
