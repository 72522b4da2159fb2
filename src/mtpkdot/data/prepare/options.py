"""How ``prepare`` runs and what a run measured: settings of speed only, none changes a byte of the store."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PrepareStats:
    """What a run measured in this process (read by the benchmark): ``seconds`` per stage (decode, face,
    crop_resize, physio, write; with the overlap, decode is timed in the decode thread and decode_wait is
    the main thread waiting for it) and the ``decoder`` setting it chose (thread type, threads per worker,
    probe times, overlap). Worker processes measure into their own copy."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    decoder: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0


@dataclass
class PrepareOptions:
    """Speed settings of one ``prepare`` run (the results and their order are the same for any of them)."""

    # a worker with at least two cores decodes the next sample's videos in a background thread (PyAV
    # releases the GIL while decoding) while the current sample gets its face crop, resize and physio;
    # at most ``lookahead`` samples ahead
    overlap: bool = True
    lookahead: int = 1
    # samples per task of a worker process
    chunk: int = 4
    # decoder thread type; None probes the first video of the run (signals.video.fastest_thread_type)
    thread_type: str | None = None
    probe_frames: int = 25
    # the work arrays and the status bitmap are flushed at most this often
    flush_seconds: float = 2.0
    stats: PrepareStats = field(default_factory=PrepareStats)
