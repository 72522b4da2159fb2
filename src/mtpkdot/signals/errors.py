"""The one exception that marks a single bad sample (recorded and skipped by ``prepare``)."""

from __future__ import annotations


class SampleError(ValueError):
    """A sample that cannot be decoded into the store; the message names the file and the problem."""
