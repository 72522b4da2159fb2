"""Faces are not lost: real face photographs rendered into Biovid-size videos with motion, zoom and a
hand over the upper face; more probe frames, the subject fallback, and crops that contain the face."""

from __future__ import annotations

import hashlib
import importlib
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import DataConfig
from mtpkdot.data import prepare, read_manifest
from mtpkdot.data.prepare import PrepareOptions
from mtpkdot.signals import video as V
from mtpkdot.signals.errors import NoFaceError
from mtpkdot.testing.photo_faces import make_photo_biovid, true_boxes

workers = importlib.import_module("mtpkdot.data.prepare.workers")
SEGMENTS = 10
MODALITIES = {
    "video": {"kind": "video", "segments": SEGMENTS, "size": 32, "face": "haar"},
    "eda": {"kind": "eda", "column": "gsr"},
}


@pytest.fixture(scope="module")
def photo_biovid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 3 subjects x 4 samples at 1388 x 1038, 2 s: per subject one clean sample, two with the upper face
    # covered on the first probe frames (k = 0, 3), one covered on every frame (k = 1); the third
    # subject is covered in every sample (no detection at all)
    return make_photo_biovid(
        tmp_path_factory.mktemp("faces") / "b",
        subjects=3,
        samples_per_class=2,
        duration=2.0,
        hidden_every=4,
        partly_every=3,
        blind_subjects=1,
    )


def _cfg(root: Path, dataset: str = "biovid") -> DataConfig:
    return DataConfig(dataset=dataset, root=root, modalities=MODALITIES, privileged=["eda"])


def _inside(box: np.ndarray, square: tuple[int, int, int]) -> float:
    """Share of the face box's area inside the crop square."""
    x, y, w, h = box
    x0, y0, s = square
    ix = max(0.0, min(x + w, x0 + s) - max(x, x0))
    iy = max(0.0, min(y + h, y0 + s) - max(y, y0))
    return ix * iy / (w * h)


def test_every_face_sample_kept_with_the_face_in_the_crop(tmp_path: Path, photo_biovid: Path, caplog) -> None:
    caplog.set_level("INFO", logger="mtpkdot")
    store = prepare(_cfg(photo_biovid), tmp_path / "s", progress=True)
    report = pd.read_csv(store.path / "prepare_report.csv", keep_default_na=False).set_index("sample_id")
    blind = report["subject_id"] == report["subject_id"].max()
    seen = report[~blind]
    assert (seen["status"] == "ok").all(), seen["reason"].tolist()
    hidden = [s for s in seen.index if s.endswith("-001")]  # covered on every frame
    assert len(hidden) == 2 and (seen.loc[hidden, "reason"] == "face: subject fallback").all()
    assert (seen.drop(index=hidden)["reason"] == "").all()  # the partly covered ones were found
    # the subject with no detection at all is dropped, saying why
    assert (report.loc[blind, "status"] == "failed").all()
    assert report.loc[blind, "reason"].str.contains("no face detected in .*no sample of subject").all()
    assert len(store) == 8 and store.meta["face_fallback"] == 2
    assert "2 cropped with their subject's face box" in caplog.text
    worst = 1.0
    for sample, row in seen.iterrows():
        square = tuple(int(v) for v in row["face_crop_video"].split())
        video = next(photo_biovid.glob(f"video/*/{sample}.mp4"))
        boxes = true_boxes(video)
        for t in V.tsn_indices(len(boxes), SEGMENTS):
            worst = min(worst, _inside(boxes[t], square))
    assert worst > 0.95, worst


def test_no_fallback_without_a_fixed_camera(tmp_path: Path, photo_biovid: Path) -> None:
    # the same files read as a dataset that is not filmed by a fixed camera: no fallback, dropped
    manifest = read_manifest(_cfg(photo_biovid))
    manifest.drop(columns=["class_name"]).to_csv(tmp_path / "m.csv", index=False)
    cfg = DataConfig(dataset="own", manifest=tmp_path / "m.csv", modalities=MODALITIES, privileged=["eda"])
    store = prepare(cfg, tmp_path / "s", progress=False)
    report = pd.read_csv(store.path / "prepare_report.csv", keep_default_na=False)
    failed = report[report["status"] == "failed"]
    assert len(failed) == 2 + 4 and failed["reason"].str.startswith("no face detected in").all()
    assert "face: subject fallback" not in set(report["reason"])


def test_a_reader_declaring_a_fixed_camera_gets_the_fallback(
    tmp_path: Path, photo_biovid: Path, monkeypatch
) -> None:
    # a new reader says it on itself and nowhere else: the same own manifest, read by a reader that
    # declares a fixed camera, keeps the two hidden samples with their subject's face box
    from mtpkdot.data.own import read_own
    from mtpkdot.data.reader import Reader
    from mtpkdot.registry import DATASETS

    class FixedCamera(Reader):
        name = "toy_fixed_camera"
        fixed_camera = True
        read = staticmethod(read_own)

    monkeypatch.setitem(DATASETS._items, FixedCamera.name, FixedCamera)
    manifest = read_manifest(_cfg(photo_biovid))
    manifest.drop(columns=["class_name"]).to_csv(tmp_path / "m.csv", index=False)
    cfg = DataConfig(
        dataset=FixedCamera.name, manifest=tmp_path / "m.csv", modalities=MODALITIES, privileged=["eda"]
    )
    report = pd.read_csv(prepare(cfg, tmp_path / "s", progress=False).path / "prepare_report.csv")
    assert (report["reason"] == "face: subject fallback").sum() == 2
    assert (report["status"] == "failed").sum() == 4  # the subject without any detection


def test_more_probe_frames_before_giving_up() -> None:
    frames = np.zeros((10, 100, 100, 3), np.uint8)
    frames[[6, 7], 0, 0, 0] = 1  # the frames "with a face", not among the first three probes (0, 4, 9)
    calls = []

    def detector(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
        calls.append(int(frame[0, 0, 0]))
        return [(40, 40, 20, 20)] if frame[0, 0, 0] else []

    assert V.face_box(frames, detector, probes=3) == (40.0, 40.0, 20.0, 20.0)
    assert len(calls) == 10
    with pytest.raises(NoFaceError, match="no face detected in clip.mp4"):
        V.face_box(frames[:5], detector, source="clip.mp4")
    frames[7, 0, 0, 0] = 0  # one hit among the extra probes is taken for a false detection
    with pytest.raises(NoFaceError):
        V.face_box(frames, detector)


def test_crop_converts_only_the_crop_and_matches_the_whole_frame(photo_biovid: Path) -> None:
    video = sorted(photo_biovid.glob("video/*/*.mp4"))[0]
    lazy, _ = V.decode_frames(video, [3, 20], as_frames=True)
    full, _ = V.decode_frames(video, [3, 20])
    for square in [(601, 333, 321), (0, 0, 1038), (1387 - 255, 1037 - 255, 255)]:
        np.testing.assert_array_equal(V.crop_frames(lazy, square), V.crop_frames(full, square))


def _digests(store_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(store_dir.iterdir()) if p.is_file()
    }


def test_overlap_and_thread_type_give_the_sequential_store(
    tmp_path: Path, photo_biovid: Path, monkeypatch
) -> None:
    # face crops of lazy PyAV frames decoded in the decode thread, no-face failures, the subject fallback
    # rerun: every store file byte-identical to the sequential loop with the AUTO decoder
    monkeypatch.setattr(workers, "_cpu_count", lambda: 2)  # one worker overlaps on any machine
    plain = PrepareOptions(overlap=False, thread_type="AUTO")
    sequential = prepare(_cfg(photo_biovid), tmp_path / "seq", progress=False, options=plain).path
    threads = []
    real = workers._decode_ahead

    def decode_ahead(*a):
        threads.append(threading.current_thread().name)
        return real(*a)

    monkeypatch.setattr(workers, "_decode_ahead", decode_ahead)
    ahead = PrepareOptions(overlap=True, thread_type="SLICE")
    overlapped = prepare(_cfg(photo_biovid), tmp_path / "ahead", progress=False, options=ahead).path
    # every sample, and the reruns with the subject fallback (2 hidden samples, 4 of the blind subject),
    # decoded in the decode thread
    assert len(threads) == 12 + 2 + 4 and all(t.startswith("mtpkdot-decode") for t in threads)
    assert _digests(overlapped) == _digests(sequential)


def test_h264_writer_b_frames_setting(tmp_path: Path) -> None:
    # the real-size benchmark's stream without B-frames (--bframes 0), where prepare has nothing to skip
    import av

    from mtpkdot.testing.photo_faces import write_h264

    yy, xx = np.mgrid[0:96, 0:128]
    waves = [128 + 60 * np.sin((xx + 2 * i) / 9) * np.cos((yy - i) / 7) for i in range(30)]
    frames = [np.repeat(w[..., None], 3, axis=2).astype(np.uint8) for w in waves]  # smooth motion
    types = {}
    for bframes in (None, 0):
        write_h264(tmp_path / f"{bframes}.mp4", frames, bframes=bframes)
        with av.open(str(tmp_path / f"{bframes}.mp4")) as container:
            types[bframes] = {f.pict_type for f in container.decode(video=0)}
    assert av.video.frame.PictureType.B in types[None]
    assert av.video.frame.PictureType.B not in types[0]
