"""What both generators share: writing into a temporary sibling folder renamed at the end, and the
per-subject (per-video) jobs mapped over spawned processes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtpkdot.config import SynthConfig

# fills a folder with one dataset: (folder, settings, workers, progress)
Fill = Callable[[Path, SynthConfig, int, bool], None]


def generate_into(out: Path, cfg: SynthConfig, kind: str, fill: Fill, workers: int, progress: bool) -> Path:
    """Generate into a temporary sibling folder and rename it, so a reader never sees half a dataset."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp, cfg, workers, progress)
        (tmp / "synth.json").write_text(json.dumps({"kind": kind, **cfg.model_dump(mode="json")}, indent=1))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def map_jobs(fn: Any, jobs: list[Any], workers: int, progress: bool, desc: str) -> list[Any]:
    from tqdm import tqdm

    disable = None if progress else True  # None: a bar only when stderr is a terminal
    if workers <= 1:
        return [fn(*j) for j in tqdm(jobs, desc=desc, disable=disable)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return list(
            tqdm(pool.imap(_star, [(fn, j) for j in jobs]), total=len(jobs), desc=desc, disable=disable)
        )


def _star(item: tuple[Any, tuple[Any, ...]]) -> Any:
    fn, args = item
    return fn(*args)
