"""Video decode (PyAV), TSN sampling, face crop, audio decode and DFT spectrograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtpkdot.data.synthetic import write_video
from mtpkdot.signals import (
    SampleError,
    crop_face,
    decode_audio,
    decode_frames,
    dft_spectrogram,
    get_face_detector,
    tsn_indices,
    video_info,
)


def _ramp_video(path: Path, n: int = 20) -> Path:
    # frame i is a flat grey of level 10 * i, so decoded frames can be identified
    frames = np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(n)])
    write_video(path, frames, fps=25)
    return path


def test_tsn_indices_centres_of_segments() -> None:
    np.testing.assert_array_equal(tsn_indices(21, 10, 1), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19])
    idx = tsn_indices(100, 5, 2)
    assert len(idx) == 10 and (np.diff(idx)[::2] == 1).all() and (np.diff(idx) >= 0).all()
    assert tsn_indices(3, 8, 1).max() == 2  # short clips repeat frames instead of failing


def test_decode_selected_frames_in_order(tmp_path: Path) -> None:
    path = _ramp_video(tmp_path / "v.mp4")
    n, fps = video_info(path)
    assert (n, fps) == (20, 25.0)
    frames, _ = decode_frames(path, [15, 2, 2, 30])  # 30 is past the end: the last frame stands in
    levels = frames.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(levels, [150, 20, 20, 190], atol=6)


def test_corrupt_video_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(SampleError, match="corrupt.mp4"):
        video_info(bad)
    with pytest.raises(SampleError, match="corrupt.mp4"):
        decode_frames(bad, [0])


def test_crop_face_uses_median_box_of_probes() -> None:
    frames = np.zeros((5, 100, 100, 3), np.uint8)
    boxes = iter([[(40, 40, 20, 20)], [], [(42, 38, 20, 20), (0, 0, 5, 5)]])

    def detector(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        return next(boxes)

    out = crop_face(frames, detector, margin=0.25, probes=3)
    assert out.shape == (5, 30, 30, 3)


def test_haar_finds_no_face_in_blank_frames() -> None:
    frames = np.full((3, 120, 120, 3), 128, np.uint8)
    with pytest.raises(SampleError, match=r"no face detected in blank\.mp4"):
        crop_face(frames, get_face_detector("haar"), source="blank.mp4")
    with pytest.raises(ValueError, match="unknown face detector"):
        get_face_detector("mediapipe")


def test_audio_track_decodes_and_spectrogram_peaks_at_tone(tmp_path: Path) -> None:
    sr = 16000
    t = np.arange(2 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    path = tmp_path / "av.mp4"
    write_video(path, np.zeros((50, 32, 32, 3), np.uint8), fps=25, audio=tone)
    wav = decode_audio(path, sr)
    assert abs(len(wav) - 2 * sr) < 2048 and 0.2 < np.abs(wav).max() < 0.4
    spec = dft_spectrogram(wav[4000:9000], 64, 107)
    assert spec.shape == (64, 107)
    # 1 kHz with a 126-point DFT at 16 kHz: bin 1000 / (16000 / 126) = 7.9
    assert abs(int(spec.mean(axis=1).argmax()) - 8) <= 1
    with pytest.raises(SampleError, match="no audio track"):
        decode_audio(_ramp_video(tmp_path / "silent.mp4"))


def test_thread_type_probe_names_both_and_the_file(tmp_path: Path) -> None:
    from mtpkdot.signals.video import THREAD_TYPES, fastest_thread_type

    path = _ramp_video(tmp_path / "v.mp4")
    best, seconds = fastest_thread_type(path, 2, frames=10, rounds=1)
    assert best in THREAD_TYPES and set(seconds) == set(THREAD_TYPES)
    assert best == min(seconds, key=seconds.get) and all(0 < s < 60 for s in seconds.values())
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(SampleError, match="corrupt.mp4"):
        fastest_thread_type(bad)


@pytest.mark.parametrize("thread_type", ["SLICE", "AUTO"])
def test_thread_type_does_not_change_the_frames(tmp_path: Path, monkeypatch, thread_type: str) -> None:
    from mtpkdot.signals import video

    path = _ramp_video(tmp_path / "v.mp4")
    reference, _ = decode_frames(path, [1, 7, 19])
    monkeypatch.setattr(video, "DECODER_THREAD_TYPE", thread_type)
    monkeypatch.setattr(video, "DECODER_THREADS", 2)
    np.testing.assert_array_equal(decode_frames(path, [1, 7, 19])[0], reference)


def _encode(path: Path, codec: str, frames: list[np.ndarray], options: dict[str, str] | None = None) -> Path:
    """Encode RGB ``frames`` with PyAV's ``codec`` (skips the test if this build lacks it)."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec}")
    with av.open(str(path), "w") as container:
        vs = container.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        vs.options = options or {}
        for frame in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(pkt)
        for pkt in vs.encode():
            container.mux(pkt)
    return path


def _b_frame_video(path: Path, n: int = 40) -> Path:
    # x264 with 3 B-frames between references and no B-pyramid: every B-frame is a non-reference frame
    base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(n)]  # motion: every frame carries new content
    options = {"preset": "fast", "x264-params": "bframes=3:b-adapt=0:b-pyramid=none:scenecut=0"}
    return _encode(path, "libx264", frames, options)


class _CountingPacket:
    """A demuxed packet that counts the frames its decoding gives out."""

    def __init__(self, packet, counter: list[int]) -> None:
        self.packet, self.size, self.pts, self.counter = packet, packet.size, packet.pts, counter

    def decode(self):
        frames = self.packet.decode()
        self.counter[0] += len(frames)
        return frames


def test_skipping_unsampled_frames_keeps_the_sampled_ones_bit_identical(tmp_path: Path, monkeypatch) -> None:
    import av

    from mtpkdot.signals import video

    path = _b_frame_video(tmp_path / "b.mp4")
    picks = [1, 2, 13, 22, 38, 39, 60]  # non-reference frames among them; 60 is past the end
    monkeypatch.setattr(video, "SKIP_UNUSED", False)
    everything, _ = decode_frames(path, picks)
    monkeypatch.setattr(video, "SKIP_UNUSED", True)
    np.testing.assert_array_equal(decode_frames(path, picks)[0], everything)
    # ... and the skipping decodes fewer frames than it would without (its B-frames are not needed)
    counts = {}
    for skip in (False, True):
        counter = [0]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [_CountingPacket(p, counter) for p in container.demux(stream)]
            ranks = video._display_ranks(packets)
            if skip:
                got = video._decode_skipping(stream, packets, ranks, set(picks))
                assert sorted(got) == [1, 2, 13, 22, 38, 39]
            else:
                for p in packets:
                    p.decode()
        counts[skip] = counter[0]
    with av.open(str(path)) as container:
        b_frames = {
            i for i, f in enumerate(container.decode(video=0)) if f.pict_type == av.video.frame.PictureType.B
        }
    assert len(b_frames) > 20  # the encoder settings gave the stream its B-frames
    assert counts[False] == 40 and counts[True] == 40 - len(b_frames - set(picks))


def test_unusual_timestamps_fall_back_to_counting_frames(tmp_path: Path, monkeypatch) -> None:
    from mtpkdot.signals import video

    class Packet:
        def __init__(self, pts, size=1) -> None:
            self.pts, self.size = pts, size

    assert video._display_ranks([Packet(0), Packet(1024), Packet(512), Packet(None, 0)]) == {
        0: 0,
        512: 1,
        1024: 2,
    }
    assert video._display_ranks([Packet(0), Packet(None)]) is None
    assert video._display_ranks([Packet(0), Packet(0)]) is None
    path = _b_frame_video(tmp_path / "b.mp4")
    picks = [3, 17, 39, 50]
    reference, _ = decode_frames(path, picks)
    monkeypatch.setattr(video, "_display_ranks", lambda packets: None)
    np.testing.assert_array_equal(decode_frames(path, picks)[0], reference)


@pytest.mark.parametrize(("codec", "suffix"), [("mpeg4", "mp4"), ("libx264", "ts")])
def test_streams_without_one_frame_per_packet_are_not_skipped(
    tmp_path: Path, monkeypatch, codec, suffix
) -> None:
    # MPEG-4 part 2 can pack two frames in one packet, MPEG-TS can carry an interlaced frame's fields in
    # two: their frames are counted as they come out
    from mtpkdot.signals import video

    ramp = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(20)]
    path = _encode(tmp_path / f"v.{suffix}", codec, ramp)

    def refuse(*args, **kwargs):
        raise AssertionError(f"frames of a {codec} .{suffix} stream were skipped")

    monkeypatch.setattr(video, "_decode_skipping", refuse)
    frames, _ = decode_frames(path, [15, 2, 30])
    np.testing.assert_allclose(frames.reshape(3, -1).mean(axis=1), [150, 20, 190], atol=6)
