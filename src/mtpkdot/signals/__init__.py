"""Signal processing shared by the readers and ``prepare``: video, biosignals, audio."""

from __future__ import annotations

from mtpkdot.signals.audio import decode_audio, dft_spectrogram
from mtpkdot.signals.errors import SampleError
from mtpkdot.signals.physio import (
    butter_filter,
    emg_spectrogram,
    infer_time_unit,
    normalize,
    read_biosignals,
    take_window,
)
from mtpkdot.signals.video import (
    crop_face,
    decode_frames,
    get_face_detector,
    list_frame_files,
    read_frames,
    register_face_detector,
    resize_frames,
    tsn_indices,
    video_info,
)

__all__ = [
    "SampleError",
    "butter_filter",
    "crop_face",
    "decode_audio",
    "decode_frames",
    "dft_spectrogram",
    "emg_spectrogram",
    "get_face_detector",
    "infer_time_unit",
    "list_frame_files",
    "normalize",
    "read_biosignals",
    "read_frames",
    "register_face_detector",
    "resize_frames",
    "take_window",
    "tsn_indices",
    "video_info",
]
