"""Reading one input file, with the plain reason when it cannot be used: missing, not a regular file
(a FIFO would block the reader forever), not the format its name says, or holding non-finite values."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from mtpkdot.signals.errors import SampleError

if TYPE_CHECKING:
    import numpy as np

MISSING = "does not exist"
# what a path that exists but is no regular file is, for the message
_SPECIAL = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file (``"does not exist"``, ``"is a FIFO (named pipe), not a
    regular file"``, ...), or None for a regular file or a link to one."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _SPECIAL if test(mode)), "a special file")
    return f"is {kind}, not a regular file"


def require_file(path: str | Path, what: str, error: type[Exception] | None = None) -> None:
    """Raise ``error`` (default: FileNotFoundError for a missing file, ValueError for any other
    problem) with ``"<what> <path> <problem>"`` unless ``path`` is a regular file."""
    problem = file_problem(path)
    if problem is None:
        return
    if error is None:
        error = FileNotFoundError if problem == MISSING else ValueError
    raise error(f"{what} {path} {problem}")


def load_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` of one ``.npy`` file (never unpickling); a missing, special or corrupt file is a
    :class:`SampleError` naming it."""
    import numpy as np

    require_file(path, "file", SampleError)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SampleError(f"cannot read {path} (not a valid .npy file: {_npy_reason(path, exc)})") from None


def _npy_reason(path: str | Path, exc: Exception) -> str:
    """numpy's reason, except for a file without the .npy header: numpy then offers to unpickle it,
    which is wrong advice for a text file or a video with a .npy name."""
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            return "it does not start with the .npy header, so it is no array saved by numpy.save"
    return str(exc)


def nonfinite(x: np.ndarray) -> str | None:
    """``"NaN"``, ``"non-finite (Inf)"`` or ``"NaN and Inf"``: what the non-finite values of ``x``
    are, for a message; None when every value is finite."""
    import numpy as np

    nan, inf = bool(np.isnan(x).any()), bool(np.isinf(x).any())
    if nan and inf:
        return "NaN and Inf"
    return "NaN" if nan else "non-finite (Inf)" if inf else None
