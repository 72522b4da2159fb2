"""Data: synthetic generators, dataset readers -> manifest, ``prepare`` -> store, subject-wise folds.

Importing this package registers the readers in ``mtpkdot.registry.DATASETS``: ``biovid``,
``biovid_authors``, ``synthetic_biovid``, ``affwild2``, ``synthetic_affwild2``, ``own``. The reader
modules import numpy/pandas lazily and the API below is loaded on first use, so ``mtpkdot --help``
stays fast. Formats: docs/data.md; contracts: docs/internals.md ("Data").
"""

from __future__ import annotations

import importlib
from typing import Any

from mtpkdot.data import affwild2, biovid, own  # noqa: F401  (register the readers)

# Imported eagerly: the function shares its name with its module, and a lazy lookup would return the
# module once ``mtpkdot.data.prepare`` has been imported anywhere.
from mtpkdot.data.prepare import prepare  # noqa: F401

_API = {
    "Store": "store",
    "check_manifest": "manifest",
    "path_column": "manifest",
    "read_manifest": "manifest",
    "task_spec": "manifest",
    "default_store_dir": "prepare",
    "prepare_key": "prepare",
    "process_sample": "prepare",
    "ProtocolError": "splits",
    "StaleFoldsError": "splits",
    "check_roles_disjoint": "splits",
    "fold_indices": "splits",
    "folds_path": "splits",
    "load_folds": "splits",
    "make_folds": "splits",
    "manifest_hash": "splits",
    "partition": "splits",
    "save_folds": "splits",
    "synth_affwild2": "synthetic",
    "synth_biovid": "synthetic",
}
__all__ = sorted([*_API, "prepare"])


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"mtpkdot.data.{_API[name]}"), name)
    raise AttributeError(f"module 'mtpkdot.data' has no attribute {name!r}")
