"""``prepare``: from a config to a finished store (or the store already there, when its key matches)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpkdot.atomic import atomic_write_text
from mtpkdot.data.manifest import path_column, read_manifest
from mtpkdot.data.prepare.job import Job, run_job
from mtpkdot.data.prepare.options import PrepareOptions
from mtpkdot.data.prepare.workers import decoder_setting, describe
from mtpkdot.data.store import Store, StoreDamagedError, array_record
from mtpkdot.layout import default_run_dir, store_lock
from mtpkdot.layout import store_dir as store_dir_of
from mtpkdot.locks import hold

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("mtpkdot.data.prepare")

# fields of ModalityConfig that only concern the encoder, not the prepared arrays
_ENCODER_FIELDS = {"backbone", "backbone_kwargs", "feature_dim", "weights", "train"}


def prepare_key(data_cfg: Any, manifest: pd.DataFrame) -> str:
    """Hash of what determines the arrays: preparation settings of the data config and the manifest."""
    d = data_cfg.model_dump(mode="json", exclude={"workers", "store", "prevalent", "privileged"})
    d["modalities"] = {
        k: {f: v for f, v in m.items() if f not in _ENCODER_FIELDS} for k, m in d["modalities"].items()
    }
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    h.update(manifest.to_csv(index=False).encode())
    return h.hexdigest()[:20]


def default_store_dir(cfg: Any) -> Path:
    """The store when no folder is given: the run layout's rule for the config's default run dir."""
    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    return store_dir_of(data_cfg.store, default_run_dir(getattr(cfg, "name", "experiment")))


def prepare(
    cfg: Any,
    store_dir: str | Path | None = None,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    options: PrepareOptions | None = None,
    verify: bool = False,
    wait: bool = False,
) -> Store:
    """Decode every sample of ``cfg.data`` once into ``store_dir`` (default ``data.store`` or
    ``runs/<name>/store``) and return the :class:`Store`.

    Idempotent (a finished store with the same key does no work) and resumable (an interrupted run
    continues with the samples not yet done). A sample that fails is listed with its reason in
    ``prepare_report.csv`` and left out of the store; ``strict=True`` raises :class:`SampleError`
    at the first failure instead. ``options``: speed settings (none changes the store); its ``stats``
    receive the run's decoder setting and, with one worker, the time per stage.

    A finished store is "up to date" only if its arrays have the sizes recorded when they were written
    (and, with ``verify``, the checksums: this reads the whole store); a damaged array is rebuilt
    from the data, or named in a :class:`StoreDamagedError` when the data is not there.
    The store's lock is held throughout (two processes writing its memory-mapped work arrays would
    truncate them under each other): when another process holds it, :class:`LockHeldError` names
    that process, or with ``wait`` this one waits for it.
    """
    options = options or PrepareOptions()
    data_cfg = cfg.data if hasattr(cfg, "data") else cfg
    store_dir = Path(store_dir) if store_dir is not None else default_store_dir(cfg)
    # the data are read (a synthetic dataset generated) under the lock too: the store's users share them
    with hold(store_lock(store_dir), f"store {store_dir}", wait, "wait for it with --wait"):
        return _prepare(data_cfg, store_dir, workers, strict, progress, options, verify)


def _prepare(
    data_cfg: Any,
    store_dir: Path,
    workers: int | None,
    strict: bool,
    progress: bool,
    options: PrepareOptions,
    verify: bool,
) -> Store:
    manifest = read_manifest(data_cfg)
    key = prepare_key(data_cfg, manifest)
    done = store_dir / "done"
    if done.is_file() and done.read_text().strip() == key:
        store = Store(store_dir)
        damage = store.damage(verify)
        if not damage:
            if verify:
                _record_arrays(store)
            if progress:
                log.info("store %s is up to date (%d samples)", store_dir, len(store))
            return store
        _rebuild(store, damage, data_cfg, manifest)
    job = Job(store_dir, data_cfg, manifest, key, int(workers or data_cfg.workers), strict, progress, options)
    job.rows = manifest.to_dict("records")
    job.decoder = decoder_setting(data_cfg, job.rows, job.workers, job.sequence, options)
    options.stats.decoder.clear()
    options.stats.decoder.update(job.decoder)
    if progress:
        log.info("decoder: %s", describe(job.decoder))
    return run_job(job)


def _rebuild(store: Store, damage: dict[str, str], data_cfg: Any, manifest: pd.DataFrame) -> None:
    """Turn a damaged finished store back into an unfinished one (its data is all there), or raise."""
    what = "; ".join(f"{store.path / f'{k}.npy'}: {why}" for k, why in damage.items())
    missing = _missing_source(data_cfg, manifest)
    if missing is not None:
        raise StoreDamagedError(
            f"the store is damaged ({what}) and cannot be rebuilt: {missing} does not exist"
        )
    log.warning("the store is damaged (%s); rebuilding it from %s", what, data_cfg.root)
    (store.path / "done").unlink()  # an interrupted rebuild leaves no finished-looking store


def _missing_source(data_cfg: Any, manifest: pd.DataFrame) -> Path | None:
    """The first file or folder of the manifest that is not there, if any."""
    for name in data_cfg.modalities:
        column = path_column(name)
        if column not in manifest.columns:
            continue
        for value in manifest[column]:
            if isinstance(value, str | Path) and not Path(value).exists():
                return Path(value)
    return None


def _record_arrays(store: Store) -> None:
    """A store from before the checksums gets them on its first ``verify`` (only its sizes and shapes
    could be checked this time)."""
    if "arrays" in store.meta:
        return
    store.meta["arrays"] = {k: array_record(store.path / f"{k}.npy") for k in store.arrays}
    atomic_write_text(store.path / "meta.json", json.dumps(store.meta, indent=1))
    log.info("store %s had no checksums (made by an older version): recorded them", store.path)
