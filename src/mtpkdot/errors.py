"""The failures a user can act on, and how they read: the command line prints one ``error:`` line.

Raise a :class:`UserError` subclass for an expected failure (a bad config or data, a run directory that
does not match, an unreadable checkpoint, a device that is not there); an operating-system error on a
file (a full disk, a size limit, a read-only or forbidden folder) is wrapped as a :class:`FileError`
naming the file. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

USER_ERROR_EXIT = 2  # the exit code of every user error (the same as a usage error)

# errors of the place a file goes, not of the program: the user frees space or picks another folder
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


class UserError(Exception):
    """An expected failure the user can fix; its message says what happened and to which file."""


class DataError(UserError, ValueError):
    """Input data that cannot be used (a manifest, a sample, a prepared store)."""


class NothingPreparedError(DataError, RuntimeError):
    """No sample of a dataset could be prepared; the message names the first failure and the report."""


class RunDirError(UserError, RuntimeError):
    """A run directory whose files do not fit the command (another config, a missing stage)."""


class CheckpointError(RunDirError):
    """A checkpoint that cannot be read (torn, truncated or not written by mtpkdot)."""


class DeviceError(UserError, RuntimeError):
    """The device asked for is not available."""


class FileError(UserError, OSError):
    """An operating-system error on a named file; ``errno`` and ``filename`` are the original's."""

    def __init__(self, message: str, code: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.errno = code
        self.filename = filename

    def __str__(self) -> str:
        return str(self.args[0])


def os_error_in(exc: BaseException) -> OSError | None:
    """The first :class:`OSError` among ``exc`` and the exceptions it was raised from or during
    (torch reports a full disk as a RuntimeError raised while handling the OSError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)  # type: ignore[assignment]
    return None


def describe_os_error(exc: OSError, path: str | Path | None = None, action: str = "write") -> str:
    """``cannot write PATH: No space left on device``: the file (``path`` or the error's own) and the
    cause, with what to do for a full or read-only place."""
    if isinstance(exc, FileError):
        return str(exc)
    where = path if path is not None else exc.filename
    cause = exc.strerror or str(exc) or type(exc).__name__
    text = f"cannot {action} {where}: {cause}" if where is not None else cause
    hint = _HINTS.get(exc.errno or 0)
    return f"{text} ({hint})" if hint else text


_HINTS = {
    errno.ENOSPC: "free some space or choose another folder, then rerun: finished work is kept",
    errno.EDQUOT: "the disk quota is used up; free some space, then rerun",
    errno.EFBIG: "the file is larger than the size limit of this process or file system (ulimit -f)",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.EACCES: "no permission; choose a folder you can write to",
}


def file_error(exc: OSError, path: str | Path | None = None, action: str = "write") -> FileError:
    """``exc`` as a :class:`FileError` whose message names the file and the cause."""
    where = path if path is not None else exc.filename
    return FileError(
        describe_os_error(exc, path, action), exc.errno, os.fspath(where) if where is not None else None
    )
