"""Checkpoints: atomic saves that carry the config section they were trained with.

Each checkpoint stores the resolved config section that produced it and its hash. Loading it for a
different config raises :class:`ConfigMismatchError` naming the file and the keys that differ, so a
run directory is never silently mixed with another experiment's results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mtpkdot.atomic import atomic_torch_save


class ConfigMismatchError(RuntimeError):
    """A run directory or checkpoint was produced by a different configuration."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def config_hash(section: Any) -> str:
    """Short sha256 of a JSON-able config section (dict keys sorted, paths as strings)."""
    return hashlib.sha256(_canonical(section).encode()).hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (``["student.lr: 0.001 -> 0.0001"]``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{name}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{name}: {old[key]!r} -> (absent)")
            else:
                out.extend(diff_keys(old[key], new[key], name))
        return out
    if _canonical(old) != _canonical(new):
        return [f"{prefix or '(value)'}: {old!r} -> {new!r}"]
    return []


def check_config(stored: Any, current: Any, where: str | Path) -> None:
    """Raise :class:`ConfigMismatchError` when ``stored`` (read from ``where``) differs from ``current``."""
    if config_hash(stored) == config_hash(current):
        return
    lines = diff_keys(stored, current)
    shown = "\n  ".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else "")
    raise ConfigMismatchError(
        f"{where} was written with a different configuration; differing keys (stored -> now):\n  {shown}\n"
        "Use a new --out directory for a new experiment, or restore the original settings to resume."
    )


def save_checkpoint(path: str | Path, state: dict[str, Any], section: Any) -> Path:
    """Write ``state`` plus the config ``section`` and its hash, atomically."""
    payload = dict(state)
    payload["config"] = section
    payload["config_hash"] = config_hash(section)
    return atomic_torch_save(payload, path)


def load_checkpoint(
    path: str | Path, section: Any | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint; with ``section`` given, check it was written with that config section.

    Our checkpoints hold RNG states (numpy arrays, python tuples), hence ``weights_only=False``:
    only load files this package wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a torn or foreign file: say which one
        raise RuntimeError(f"checkpoint {path} cannot be read ({exc}); delete it to retrain") from exc
    if section is not None:
        if "config" not in state:
            raise ConfigMismatchError(f"checkpoint {path} holds no config; it was not written by mtpkdot")
        check_config(state["config"], section, path)
    return state
