"""``prepare``: decode every sample once into a store of fixed-shape arrays (resumable, parallel).

Per modality kind (settings from ``data.modalities.<name>``; one handler per kind in ``kinds.KINDS``):

- ``video``: PyAV decode (or a frame folder, or a ``.npy`` T x H x W x C), optional ``window`` in seconds,
  TSN sampling of ``segments x frames_per_segment`` frames, optional face crop (``face: haar``), resize
  to ``size``. Affwild2-like sequences take ``sequence_length`` clips of consecutive frames instead.
- ``eda`` / ``signal``: CSV column(s) (``column``, comma separated; time unit inferred) or ``.npy``
  ``C x T``; Butterworth filter on the whole recording, ``window``, ``normalize`` -> ``C x T``.
- ``emg``: as a signal, then the released code's spectrogram (65 x 127 for a 3 s window) -> ``C x F x N``.
- ``audio``: PyAV decode at ``audio_rate``; DFT spectrogram ``1 x freq_bins x time_bins`` per clip.
- ``features``: ``.npy`` vector ``D``.

Faces: on datasets filmed with a fixed camera (their reader's ``fixed_camera``), a sample whose video
shows no face on any sampled frame is cropped with its subject's usual face box (the median of the boxes
detected in that subject's other samples) once every sample has been seen; ``prepare_report.csv`` says so.

Bookkeeping: work arrays live in ``<store>/.work`` with a per-sample status bitmap flushed every few
seconds (after the arrays), keyed by a hash of the preparation settings and the manifest. Re-running
continues where it stopped; a finished store with the same key is returned without work.

Speed: the video decoder's thread type is the faster of SLICE and AUTO on the run's first video (a short
probe; the pixels are the same either way), frames that no sampled frame needs are not decoded
(``signals.video.SKIP_UNUSED``), and a worker with two cores or more decodes the next sample's videos
in a background thread while the current one is finished (same results, same order).

Modules: ``kinds`` (per-kind decoders), ``sequences`` (Affwild2-like samples), ``sample`` (one row),
``workers`` (process pool, decode-ahead thread, thread-type probe), ``job`` (work folder, bitmap,
resume, face fallback, report), ``run`` (``prepare`` itself), ``options`` (:class:`PrepareOptions`).
"""

from __future__ import annotations

from mtpkdot.data.prepare.kinds import decode_video_for
from mtpkdot.data.prepare.options import PrepareOptions, PrepareStats
from mtpkdot.data.prepare.run import default_store_dir, prepare, prepare_key
from mtpkdot.data.prepare.sample import process_sample

__all__ = [
    "PrepareOptions",
    "PrepareStats",
    "decode_video_for",
    "default_store_dir",
    "prepare",
    "prepare_key",
    "process_sample",
]
