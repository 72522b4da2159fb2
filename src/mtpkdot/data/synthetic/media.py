"""Encoding of the synthetic videos: mp4 (H.264, or MPEG-4 where libx264 is missing) with PyAV, with an
optional AAC audio track."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

AUDIO_RATE = 16000


def _open_video(path: Path, width: int, height: int, fps: int, audio: bool = False) -> tuple[Any, Any, Any]:
    import av

    container = av.open(str(path), "w")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    vs = container.add_stream(codec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        vs.options = {"preset": "ultrafast", "crf": "20"}
    aus = None
    if audio:
        aus = container.add_stream("aac", rate=AUDIO_RATE)
        aus.layout = "mono"
    return container, vs, aus


def write_video(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None) -> None:
    """Encode ``frames`` (T x H x W x 3 uint8) to mp4 with PyAV; optional mono float audio at 16 kHz (AAC)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    container, vs, aus = _open_video(path, frames.shape[2], frames.shape[1], fps, audio is not None)
    try:
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(pkt)
        for pkt in vs.encode():
            container.mux(pkt)
        if aus is not None and audio is not None:
            pts = 0
            for i in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[i : i + 1024], dtype=np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts = AUDIO_RATE, pts
                pts += chunk.shape[1]
                for pkt in aus.encode(af):
                    container.mux(pkt)
            for pkt in aus.encode():
                container.mux(pkt)
    finally:
        container.close()
