"""The one exception that marks a single bad sample (recorded and skipped by ``prepare``)."""

from __future__ import annotations

from mtpkdot.errors import DataError


class SampleError(DataError):
    """A sample that cannot be decoded into the store; the message names the file and the problem."""


class NoFaceError(SampleError):
    """No frame of a video showed a face (``prepare`` may fall back to the subject's usual face box)."""
