"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a torn file.

A write that fails on the operating system's side (a full disk, a size limit, a read-only folder)
leaves the old file as it was and raises :class:`~mtpkdot.errors.FileError` naming the target file.
Inside :func:`file_set` the writes become one set: all of them land, or none does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, BinaryIO

from mtpkdot.errors import STORAGE_ERRNOS, file_error, os_error_in

# target -> temporary file of the writes of the open file_set (None: no set open, writes land at once)
_STAGED: ContextVar[dict[Path, Path] | None] = ContextVar("mtpkdot_staged_writes", default=None)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file in the target folder, fsync, then rename over ``path``."""
    path = Path(path)
    try:
        return _atomic_write(path, write)
    except Exception as exc:
        cause = os_error_in(exc)
        if cause is None or cause.errno not in STORAGE_ERRNOS:
            raise
        raise file_error(cause, path) from exc


def _atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would (0666 minus umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        staged = _STAGED.get()
        if staged is None:
            os.replace(tmp, path)
        else:
            _discard(staged.pop(path.absolute(), None))
            staged[path.absolute()] = Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def file_set() -> Iterator[None]:
    """Make the atomic writes of the block one set: each goes to a temporary file, and they are all
    renamed into place when the block ends without an error; on an error none is, and every old file
    stays as it was (a report's markdown and HTML never disagree). :func:`staged` gives the file a
    written path reads from meanwhile. A set inside a set is part of the outer one."""
    if _STAGED.get() is not None:
        yield
        return
    staged: dict[Path, Path] = {}
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp in staged.values():
            _discard(tmp)
        raise
    finally:
        _STAGED.reset(token)
    _land(staged)


def _land(staged: dict[Path, Path]) -> None:
    """Rename every temporary file of a set over its target (renames need no new space)."""
    items = list(staged.items())
    for i, (path, tmp) in enumerate(items):
        try:
            os.replace(tmp, path)
        except OSError as exc:
            for _, rest in items[i:]:
                _discard(rest)
            raise file_error(exc, path) from exc


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def staged(path: str | Path) -> Path:
    """Where the content of ``path`` is now: its temporary file while an open :func:`file_set` holds
    a write of it, else ``path`` itself."""
    pending = _STAGED.get()
    return pending.get(Path(path).absolute(), Path(path)) if pending else Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_csv(df: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    return atomic_write_text(path, df.to_csv(**kwargs))


def atomic_save_npz(path: str | Path, **arrays: Any) -> Path:
    import numpy as np

    return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
