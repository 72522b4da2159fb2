"""Locks on the folders a process writes (a run directory, one of its cells, a store).

A lock is an ``fcntl.flock`` on a lock file that records its holder (pid, host, since when) while it
is held. The kernel releases a flock when its process ends, however it ends, so a lock is never left
held by a dead process. A holder that releases normally empties the file first: a record found in a
lock file whose flock is free was therefore left by a process that ended without releasing (killed,
crashed, its machine rebooted), and is taken over with a message. Nothing is decided from the pid
itself: pids are reused, and the pid of another host cannot be checked.

Lock files are never deleted: a process waiting on a file that another one had unlinked would lock a
file nobody else sees any more.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mtpkdot.errors import UserError

log = logging.getLogger(__name__)

# how long a process that found the flock held tries to read its holder's record (it may be mid-write)
_READ_TRIES = 20
_READ_PAUSE = 0.05


class LockHeldError(UserError, RuntimeError):
    """Another live process holds the lock: the message names it (pid, host, since when)."""


@dataclass(frozen=True)
class Holder:
    """Who holds, or held, a lock: what its file records."""

    pid: int
    host: str
    since: str

    @classmethod
    def me(cls) -> Holder:
        since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(os.getpid(), socket.gethostname(), since)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def encode(self) -> bytes:
        return (json.dumps({"pid": self.pid, "host": self.host, "since": self.since}) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Holder | None:
        try:
            rec = json.loads(data)
            return cls(int(rec["pid"]), str(rec["host"]), str(rec["since"]))
        except (ValueError, KeyError, TypeError):
            return None


class FileLock:
    """An exclusive lock on ``path`` (created with its folder when missing), named ``what`` in messages.

    ``acquire(wait=False)`` raises :class:`LockHeldError` naming the holder when another process holds
    it, with ``advice`` (what the user can do) appended; ``wait=True`` blocks until it is free.
    Acquiring a lock this object already holds does nothing; ``release`` is idempotent.
    """

    def __init__(self, path: str | Path, what: str, advice: str = "") -> None:
        self.path = Path(path)
        self.what = what
        self.advice = advice
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"FileLock({str(self.path)!r})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = False) -> FileLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_flock(fd):
                holder = _holder_of_held(fd)
                if not wait:
                    advice = f"; {self.advice}" if self.advice else ""
                    raise LockHeldError(f"{self.what} is in use by {holder} ({self.path}){advice}")
                log.info("%s is in use by %s: waiting for it", self.what, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            stale = Holder.decode(os.pread(fd, 4096, 0))
            if stale is not None:
                log.warning(
                    "taking over the lock of %s from %s, which ended without releasing it (%s)",
                    self.what,
                    stale,
                    self.path,
                )
            _record(fd, Holder.me())
        except BaseException:
            os.close(fd)  # closing drops the flock too, if it was taken
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # an empty lock file is a free lock: a record left behind marks a dead holder
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def hold(path: str | Path, what: str, wait: bool = False, advice: str = "") -> Iterator[FileLock]:
    """Hold the lock of ``path`` for the ``with`` block (see :class:`FileLock`)."""
    lock = FileLock(path, what, advice).acquire(wait)
    try:
        yield lock
    finally:
        lock.release()


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _record(fd: int, holder: Holder) -> None:
    """Write ``holder`` over the file's content (written, then cut to its length: a reader that finds
    the file empty or torn meanwhile reads it again)."""
    data = holder.encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def _holder_of_held(fd: int) -> str:
    """Who holds the flock on ``fd``'s file, as a phrase; the holder may be writing its record just now."""
    for _ in range(_READ_TRIES):
        holder = Holder.decode(os.pread(fd, 4096, 0))
        if holder is not None:
            return str(holder)
        time.sleep(_READ_PAUSE)
    return "another process (its record could not be read)"
