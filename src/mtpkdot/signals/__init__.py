"""Signal processing shared by the readers and ``prepare``: video, biosignals, audio.

Names are loaded on first use (numpy, scipy, PyAV and OpenCV stay out of ``mtpkdot --help``).
"""

from __future__ import annotations

import importlib
from typing import Any

from mtpkdot.signals.errors import NoFaceError, SampleError  # noqa: F401

_API = {
    "decode_audio": "audio",
    "dft_spectrogram": "audio",
    "butter_filter": "physio",
    "emg_spectrogram": "physio",
    "infer_time_unit": "physio",
    "normalize": "physio",
    "read_biosignals": "physio",
    "take_window": "physio",
    "crop_face": "video",
    "crop_frames": "video",
    "crop_square": "video",
    "decode_frames": "video",
    "face_box": "video",
    "get_face_detector": "video",
    "list_frame_files": "video",
    "read_frames": "video",
    "register_face_detector": "video",
    "resize_frames": "video",
    "tsn_indices": "video",
    "video_info": "video",
}
__all__ = sorted([*_API, "NoFaceError", "SampleError"])


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"mtpkdot.signals.{_API[name]}"), name)
    raise AttributeError(f"module 'mtpkdot.signals' has no attribute {name!r}")
