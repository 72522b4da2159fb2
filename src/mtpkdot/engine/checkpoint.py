"""Checkpoints: atomic saves that carry the config section they were trained with.

Each checkpoint stores the resolved config section that produced it and its hash. Loading it for a
different config raises :class:`ConfigMismatchError` naming the file and the keys that differ, so a
run directory is never silently mixed with another experiment's results.

Files are read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors, numbers,
strings and plain containers, so opening one never runs code. Numpy arrays (the numpy RNG state,
similarity snapshots) are stored as tensors tagged with their dtype and turned back on load.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtpkdot.atomic import atomic_torch_save
from mtpkdot.errors import CheckpointError, RunDirError, UserError

_NDARRAY = "__mtpkdot_ndarray__"


class ConfigMismatchError(RunDirError):
    """A run directory or checkpoint was produced by a different configuration."""


class UnsafeFileError(UserError, ValueError):
    """A file the tool reads holds pickled Python objects beyond tensors and plain containers."""


def to_plain(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars replaced by what ``torch.load(weights_only=True)`` reads."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("cannot store a numpy array of Python objects in a checkpoint")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj)), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    return _map_container(obj, to_plain)


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain`: tagged tensors become numpy arrays of their original dtype again."""
    if isinstance(obj, dict) and _NDARRAY in obj:
        return obj[_NDARRAY].numpy().astype(np.dtype(obj["dtype"]), copy=False)
    return _map_container(obj, from_plain)


def _map_container(obj: Any, fn: Any) -> Any:
    """``fn`` applied inside dicts, lists and tuples; a container with nothing changed is returned as
    is, so state dicts keep their type and ``_metadata`` (module versions ``load_state_dict`` reads)."""
    if isinstance(obj, dict):
        new = {k: fn(v) for k, v in obj.items()}
        if all(new[k] is obj[k] for k in obj):
            return obj
        out = copy.copy(obj)
        out.update(new)
        return out
    if isinstance(obj, (list, tuple)):
        items = [fn(v) for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(items)
    return obj


def safe_torch_load(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file that would need code to unpickle is refused, naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise
        raise UnsafeFileError(
            f"{what} {path} is refused: it holds more than tensors and plain containers "
            f"({_unpickler_reason(str(exc))}), so it was not loaded and none of its code ran"
        ) from None


def _unpickler_reason(message: str) -> str:
    """The line of torch's long weights-only message that names what the file asked for."""
    for line in message.splitlines():
        line = line.split("WeightsUnpickler error:")[-1].strip()
        if "GLOBAL" in line or line.startswith(("Unsupported", "Trying to load")):
            return line.rstrip(".")
    return "content the weights-only unpickler does not accept"


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
    payload = to_plain(dict(state))
    payload["config"] = section
    payload["config_hash"] = config_hash(section)
    return atomic_torch_save(payload, path)


def load_checkpoint(
    path: str | Path, section: Any | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint; with ``section`` given, check it was written with that config section.

    Read with ``weights_only=True``: a file holding other pickled objects raises
    :class:`UnsafeFileError` without running anything.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = from_plain(safe_torch_load(path, "checkpoint", map_location))
    except UnsafeFileError:
        raise
    except Exception as exc:  # a torn or foreign file: say which one
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc}); delete it to retrain") from exc
    if section is not None:
        if "config" not in state:
            raise ConfigMismatchError(f"checkpoint {path} holds no config; it was not written by mtpkdot")
        check_config(state["config"], section, path)
    return state
