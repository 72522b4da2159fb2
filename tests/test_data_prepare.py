"""prepare -> Store: shapes, idempotence, resume after an interruption, failures, workers, own data."""

from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtpkdot.config import DataConfig, SynthConfig
from mtpkdot.data import Store, prepare, read_manifest
from mtpkdot.data.prepare import PrepareOptions, decode_video_for, process_sample
from mtpkdot.data.synthetic import synth_affwild2, synth_biovid
from mtpkdot.signals import SampleError

# the modules (the package attribute `mtpkdot.data.prepare` is the function of the same name)
job = importlib.import_module("mtpkdot.data.prepare.job")
kinds = importlib.import_module("mtpkdot.data.prepare.kinds")
workers = importlib.import_module("mtpkdot.data.prepare.workers")
REAL_PROCESS = process_sample

MODALITIES = {
    "video": {"kind": "video", "segments": 4, "size": 16},
    "eda": {"kind": "eda", "column": "gsr", "lowpass_hz": 5.0, "normalize": "baseline"},
    "emg": {"kind": "emg", "column": "emg_corrugator", "window": [2.0, 5.0]},
}


@pytest.fixture(scope="module")
def biovid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_biovid(
        tmp_path_factory.mktemp("p") / "b", SynthConfig(subjects=3, samples_per_class=2, size=24, part="B")
    )


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(
        dataset="biovid",
        root=root,
        modalities=kw.pop("modalities", MODALITIES),
        privileged=["eda", "emg"],
        **kw,
    )


class Counter:
    """Wraps process_sample: counts calls and can stop (KeyboardInterrupt) after ``stop_after`` calls."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls, self.stop_after, self.real = 0, stop_after, REAL_PROCESS

    def __call__(self, *a, **k):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.real(*a, **k)


def test_prepare_shapes_and_labels(tmp_path: Path, biovid: Path) -> None:
    store = prepare(_cfg(biovid), tmp_path / "s", progress=False)
    assert len(store) == 12 and store.modalities == ["video", "eda", "emg"]
    v, e, m = store.array("video"), store.array("eda"), store.array("emg")
    assert v.shape == (12, 4, 16, 16, 3) and v.dtype == np.uint8
    assert e.shape == (12, 1, 2816) and e.dtype == np.float32
    assert m.shape == (12, 1, 65, 127) and m.dtype == np.float32
    assert isinstance(v, np.memmap) and not v.flags.writeable
    samples = pd.read_csv(biovid / "samples.csv", sep="\t")
    expected = dict(zip(samples["sample_name"], (samples["class_name"] == "PA4").astype(int), strict=True))
    assert [expected[s] for s in store.manifest["sample_id"]] == store.labels.tolist()
    assert store.task.kind == "classification" and store.task.names == ["BL1", "PA4"]
    report = pd.read_csv(store.path / "prepare_report.csv")
    assert (report["status"] == "ok").all() and len(report) == 12


def test_rerun_does_no_work_and_settings_change_rebuilds(tmp_path: Path, biovid: Path, monkeypatch) -> None:
    prepare(_cfg(biovid), tmp_path / "s", progress=False)
    counter = Counter()
    monkeypatch.setattr(workers, "process_sample", counter)
    prepare(_cfg(biovid), tmp_path / "s", progress=False)
    assert counter.calls == 0
    # encoder-only settings do not invalidate the store ...
    mods = {**MODALITIES, "video": {**MODALITIES["video"], "backbone": "r3d_18"}}
    prepare(_cfg(biovid, modalities=mods), tmp_path / "s", progress=False)
    assert counter.calls == 0
    # ... preparation settings do
    mods = {**MODALITIES, "video": {**MODALITIES["video"], "size": 8}}
    store = prepare(_cfg(biovid, modalities=mods), tmp_path / "s", progress=False)
    assert counter.calls == 12 and store.array("video").shape[2] == 8


def test_interrupted_prepare_resumes_with_the_rest(tmp_path: Path, biovid: Path, monkeypatch) -> None:
    first = Counter(stop_after=5)
    monkeypatch.setattr(workers, "process_sample", first)
    with pytest.raises(KeyboardInterrupt):
        prepare(_cfg(biovid), tmp_path / "s", progress=False, options=PrepareOptions(flush_seconds=0.0))
    assert first.calls == 5 and not (tmp_path / "s" / "done").exists()
    second = Counter()
    monkeypatch.setattr(workers, "process_sample", second)
    store = prepare(_cfg(biovid), tmp_path / "s", progress=False)
    assert second.calls == 12 - 5
    ref = prepare(_cfg(biovid), tmp_path / "ref", progress=False)
    for mod in ("video", "eda", "emg"):
        np.testing.assert_array_equal(store.array(mod), ref.array(mod))
    third = Counter()
    monkeypatch.setattr(workers, "process_sample", third)
    prepare(_cfg(biovid), tmp_path / "s", progress=False)
    assert third.calls == 0


class Bars:
    """Stands in for tqdm: records each bar's total, where its count starts and where it ends."""

    made: list[Bars] = []

    def __init__(self, iterable, total: int, initial: int = 0, **kw) -> None:
        self.iterable, self.total, self.initial, self.n = iterable, total, initial, initial
        Bars.made.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def close(self) -> None:
        pass


@pytest.fixture()
def bars(monkeypatch) -> list[Bars]:
    Bars.made = []
    monkeypatch.setattr("tqdm.tqdm", Bars)
    return Bars.made


def test_prepare_bar_counts_every_sample(tmp_path: Path, biovid: Path, bars) -> None:
    """The first sample is prepared apart (it fixes the array shapes) and still counts: 12 of 12."""
    prepare(_cfg(biovid), tmp_path / "s", progress=True)
    assert [(b.initial, b.n, b.total) for b in bars] == [(1, 12, 12)]


def test_resumed_prepare_says_so_and_counts_from_the_samples_done(
    tmp_path: Path, biovid: Path, monkeypatch, bars, caplog
) -> None:
    caplog.set_level("INFO", logger="mtpkdot")
    monkeypatch.setattr(workers, "process_sample", Counter(stop_after=5))
    with pytest.raises(KeyboardInterrupt):
        prepare(_cfg(biovid), tmp_path / "s", progress=False, options=PrepareOptions(flush_seconds=0.0))
    assert "resum" not in caplog.text
    bars.clear()
    monkeypatch.setattr(workers, "process_sample", REAL_PROCESS)
    prepare(_cfg(biovid), tmp_path / "s", progress=True)
    assert (
        f"resuming the interrupted prepare of {tmp_path / 's'}: 5 of 12 samples already done" in caplog.text
    )
    assert [(b.initial, b.n, b.total) for b in bars] == [(5, 12, 12)]


@pytest.fixture()
def damaged(tmp_path: Path, biovid: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the dataset with one corrupt video, one truncated CSV, one NaN CSV, one missing column."""
    root = tmp_path / "d"
    shutil.copytree(biovid, root)
    samples = pd.read_csv(root / "samples.csv", sep="\t")
    names = list(samples["sample_name"])
    subj = dict(zip(samples["sample_name"], samples["subject_name"], strict=True))
    bio = {n: root / "biosignals_filtered" / subj[n] / f"{n}_bio.csv" for n in names}
    vid = root / "video" / subj[names[1]] / f"{names[1]}.mp4"
    vid.write_bytes(vid.read_bytes()[:300])
    text = bio[names[2]].read_text()
    bio[names[2]].write_text(text[: len(text) // 4])
    lines = bio[names[3]].read_text().splitlines()
    lines[100] = "\t".join(lines[100].split("\t")[:1] + ["nan"] + lines[100].split("\t")[2:])
    bio[names[3]].write_text("\n".join(lines) + "\n")
    df = pd.read_csv(bio[names[4]], sep="\t").drop(columns="emg_corrugator")
    df.to_csv(bio[names[4]], sep="\t", index=False)
    return root, {
        names[1]: f"{names[1]}.mp4",
        names[2]: f"{names[2]}_bio.csv",
        names[3]: f"{names[3]}_bio.csv",
        names[4]: f"{names[4]}_bio.csv",
    }


def test_bad_samples_are_reported_and_excluded(tmp_path: Path, damaged, caplog) -> None:
    caplog.set_level("INFO", logger="mtpkdot")
    root, bad = damaged
    store = prepare(_cfg(root), tmp_path / "s", progress=True)
    assert len(store) == 12 - len(bad)
    assert not set(bad) & set(store.manifest["sample_id"])
    report = pd.read_csv(store.path / "prepare_report.csv").set_index("sample_id")
    for sample, fname in bad.items():
        assert report.loc[sample, "status"] == "failed"
        assert fname in report.loc[sample, "reason"]
    reasons = " | ".join(report.loc[list(bad), "reason"])
    assert "cannot" in reasons and "NaN" in reasons and "emg_corrugator" in reasons
    assert "8/12 samples" in caplog.text
    # the failures are not retried on a rerun (the store is up to date)
    assert len(prepare(_cfg(root), tmp_path / "s", progress=False)) == 8


def test_strict_stops_at_first_bad_sample_naming_it(tmp_path: Path, damaged) -> None:
    root, bad = damaged
    first_bad = next(iter(bad.values()))
    with pytest.raises(SampleError, match=first_bad.replace(".", r"\.")):
        prepare(_cfg(root), tmp_path / "s", strict=True, progress=False)


@pytest.mark.parametrize("cores", [2, 4])
def test_two_workers_give_the_same_store(tmp_path: Path, biovid: Path, monkeypatch, cores: int) -> None:
    # 2 cores: each worker one decoder thread, no overlap; 4 cores: two threads each and the overlap
    monkeypatch.setattr(workers, "_cpu_count", lambda: cores)
    assert workers._overlaps(2, PrepareOptions()) == (cores == 4)
    one = prepare(_cfg(biovid), tmp_path / "one", workers=1, progress=False)
    two = prepare(_cfg(biovid), tmp_path / "two", workers=2, progress=False)
    for mod in ("video", "eda", "emg"):
        np.testing.assert_array_equal(one.array(mod), two.array(mod))


def _results(items: list, cfg: DataConfig, options: PrepareOptions) -> list:
    return [(i, code, err, res) for i, res, err, code in workers.results(items, cfg, False, 1, options)]


def test_overlapped_results_equal_the_sequential_ones_in_order(damaged, monkeypatch) -> None:
    # the next video decoded ahead in a thread: the same results (a corrupt video's error included,
    # raised from the decode thread) in the same order as the sequential loop
    root, bad = damaged
    cfg = _cfg(root)
    items = list(enumerate(read_manifest(cfg).to_dict("records")))
    monkeypatch.setattr(workers, "_cpu_count", lambda: 2)
    sequential = _results(items, cfg, PrepareOptions(overlap=False))
    options = PrepareOptions(overlap=True)
    overlapped = _results(items, cfg, options)
    assert options.stats.seconds["decode_wait"] > 0  # the main thread took decoded frames from the thread
    assert [r[:3] for r in overlapped] == [r[:3] for r in sequential]
    assert [i for i, *_ in overlapped] == list(range(12))
    assert sum(err is not None and bad[next(iter(bad))] in err for _, _, err, _ in overlapped) == 1
    for (*_, a), (*_, b) in zip(sequential, overlapped, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_probed_thread_type_reaches_the_decoder_and_is_logged(
    tmp_path: Path, biovid: Path, monkeypatch, caplog
):
    from mtpkdot.signals import video

    caplog.set_level("INFO", logger="mtpkdot")
    probed = []

    def fastest(path, threads, frames):
        probed.append((Path(path).name, threads))
        return "SLICE", {"SLICE": 0.010, "AUTO": 0.020}

    monkeypatch.setattr(video, "fastest_thread_type", fastest)
    monkeypatch.setattr(video, "DECODER_THREAD_TYPE", video.DECODER_THREAD_TYPE)
    monkeypatch.setattr(workers, "_cpu_count", lambda: 2)
    options = PrepareOptions()
    prepare(_cfg(biovid), tmp_path / "s", workers=1, progress=True, options=options)
    first = Path(read_manifest(_cfg(biovid))["path_video"][0]).name
    assert probed == [(first, 0)] and video.DECODER_THREAD_TYPE == "SLICE"
    assert options.stats.decoder == {
        "thread_type": "SLICE",
        "threads": 0,
        "overlap": True,
        "probe_ms": {"SLICE": 10.0, "AUTO": 20.0},
    }
    assert (
        "decoder: thread type SLICE, FFmpeg's choice of threads per worker (probe, SLICE 10 ms" in caplog.text
    )
    # one decoder thread per worker: nothing to choose, no probe
    prepare(_cfg(biovid), tmp_path / "two", workers=2, progress=False, options=options)
    assert len(probed) == 1 and options.stats.decoder["thread_type"] == "AUTO"


def test_store_requires_done_marker(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a finished store"):
        Store(tmp_path)


def test_affwild2_store_labels_and_audio(tmp_path: Path) -> None:
    root = synth_affwild2(tmp_path / "aw", SynthConfig(subjects=3, size=16, duration=3.0))
    cfg = DataConfig(
        dataset="affwild2",
        root=root,
        task="va",
        sequence_length=3,
        modalities={"video": {"kind": "video", "segments": 4, "size": 16}, "audio": {"kind": "audio"}},
        privileged=["audio"],
    )
    store = prepare(cfg, tmp_path / "s", progress=False)
    n = len(store)
    assert store.array("video").shape == (n, 3, 4, 16, 16, 3)
    assert store.array("audio").shape == (n, 3, 1, 64, 107)
    assert store.labels.shape == (n, 3, 4, 2) and store.task.kind == "regression"
    ann = root / "annotations" / "VA_Estimation_Challenge"
    total_invalid = 0
    for txt in ann.glob("*/*.txt"):
        va = pd.read_csv(txt).to_numpy()
        total_invalid += int((va == -5).all(axis=1).sum())
        rows = np.flatnonzero(store.manifest["video_id"] == txt.stem)
        flat = store.labels[rows].reshape(-1, 2)[: len(va)]
        np.testing.assert_allclose(np.nan_to_num(flat, nan=-5), va, atol=1e-6)
    padding = int((12 - store.manifest["frame_count"]).sum())  # frames past each video's end
    assert np.isnan(store.labels).all(axis=-1).sum() == total_invalid + padding


def test_own_manifest_any_modalities(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(4):
        for k in range(3):
            sid = f"s{s}_{k}"
            np.save(tmp_path / f"{sid}_face.npy", rng.integers(0, 255, (10, 20, 20, 3), dtype=np.uint8))
            np.save(tmp_path / f"{sid}_resp.npy", rng.normal(size=(2, 256)))
            np.save(tmp_path / f"{sid}_feat.npy", rng.normal(size=7))
            rows.append([sid, f"p{s}", k % 2, f"{sid}_face.npy", f"{sid}_resp.npy", f"{sid}_feat.npy"])
    df = pd.DataFrame(
        rows, columns=["sample_id", "subject_id", "label", "path_face", "path_resp", "path_feat"]
    )
    df.to_csv(tmp_path / "manifest.csv", index=False)
    cfg = DataConfig(
        dataset="own",
        manifest=tmp_path / "manifest.csv",
        modalities={
            "face": {"kind": "video", "segments": 5, "size": 8},
            "resp": {"kind": "signal", "sample_rate": 64, "window": [0.0, 3.0]},
            "feat": {"kind": "features"},
        },
        prevalent=["face"],
        privileged=["resp", "feat"],
    )
    store = prepare(cfg, tmp_path / "s", progress=False)
    assert store.array("face").shape == (12, 5, 8, 8, 3)
    assert store.array("resp").shape == (12, 2, 192)
    np.testing.assert_allclose(store.array("feat")[4], np.load(tmp_path / "s1_1_feat.npy"), rtol=1e-6)
    assert store.labels.tolist() == df["label"].tolist()
    assert store.task.num_outputs == 2 and store.task.names == ["0", "1"]  # not the default bl1_pa4 names
    three = prepare(cfg.model_copy(update={"task": "classification:3"}), tmp_path / "s3", progress=False)
    assert three.task.num_outputs == 3


def test_five_class_task_keeps_five_outputs_without_every_class(tmp_path: Path, biovid: Path) -> None:
    # the dataset only has BL1 and PA4: labels 0 and 4, still a 5-way task
    store = prepare(_cfg(biovid, task="five_class"), tmp_path / "s", progress=False)
    assert sorted(set(store.labels.tolist())) == [0, 4]
    assert store.task.num_outputs == 5 and store.task.names == ["BL1", "PA1", "PA2", "PA3", "PA4"]


def test_cli_synth_then_prepare(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mtpkdot.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "synth",
            "biovid",
            str(tmp_path / "d"),
            "--subjects",
            "2",
            "--samples-per-class",
            "1",
            "--size",
            "16",
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  dataset: biovid\n  root: d\n  modalities:\n    video: {kind: video, segments: 2, size: 8}\n"
        "    eda: {kind: eda}\n  privileged: [eda]\n"
    )
    res = runner.invoke(app, ["prepare", str(cfg), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    # --out is the run directory: the store is <run dir>/store, where `mtpkdot run --out` looks
    assert "n=4" in res.output and Store(tmp_path / "s" / "store").array("video").shape == (4, 2, 8, 8, 3)
    res = runner.invoke(
        app, ["prepare", str(cfg), "--set", "data.root=nowhere", "--out", str(tmp_path / "s2")]
    )
    assert res.exit_code == 2 and "nowhere does not exist" in res.output


def test_corrupt_npy_is_reported_with_its_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(2):
        for k in range(2):
            sid = f"s{s}_{k}"
            np.save(tmp_path / f"{sid}_face.npy", rng.integers(0, 255, (6, 12, 12, 3), dtype=np.uint8))
            np.save(tmp_path / f"{sid}_feat.npy", rng.normal(size=5))
            rows.append([sid, f"p{s}", k, f"{sid}_face.npy", f"{sid}_feat.npy"])
    (tmp_path / "s1_0_feat.npy").write_bytes(b"\x93NUMPY garbage")  # a truncated header
    (tmp_path / "s1_1_face.npy").write_bytes(np.save.__doc__.encode()[:200])  # not an .npy at all
    pd.DataFrame(rows, columns=["sample_id", "subject_id", "label", "path_face", "path_feat"]).to_csv(
        tmp_path / "manifest.csv", index=False
    )
    cfg = DataConfig(
        dataset="own",
        manifest=tmp_path / "manifest.csv",
        modalities={"face": {"kind": "video", "segments": 2, "size": 8}, "feat": {"kind": "features"}},
        prevalent=["face"],
        privileged=["feat"],
    )
    store = prepare(cfg, tmp_path / "s", progress=False)
    report = pd.read_csv(store.path / "prepare_report.csv", keep_default_na=False).set_index("sample_id")
    assert len(store) == 2
    for sid, name in (("s1_0", "s1_0_feat.npy"), ("s1_1", "s1_1_face.npy")):
        reason = report.loc[sid, "reason"]
        assert str(tmp_path / name) in reason and "not a valid .npy file" in reason, reason


def test_unexpected_error_names_the_file(tmp_path: Path, biovid: Path, monkeypatch) -> None:
    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("mtpkdot.signals.physio.emg_spectrogram", broken)
    store_dir = tmp_path / "s"
    with pytest.raises(RuntimeError, match="no sample"):
        prepare(_cfg(biovid), store_dir, progress=False)
    reasons = [
        json.loads(line)["reason"]
        for line in (store_dir / ".work" / "failures.jsonl").read_text().splitlines()
    ]
    assert reasons and all(
        "_bio.csv" in r and "modality 'emg'" in r and "ZeroDivisionError" in r for r in reasons
    )


def test_decode_video_for_gives_the_stored_clip(tmp_path: Path, biovid: Path) -> None:
    from mtpkdot.config import ModalityConfig

    store = prepare(_cfg(biovid), tmp_path / "s", progress=False)
    mc = ModalityConfig(**MODALITIES["video"])
    for i in (0, 5):
        clip = decode_video_for(Path(store.manifest["path_video"][i]), mc)
        np.testing.assert_array_equal(clip, store.array("video")[i])


def test_a_clip_of_the_wrong_frame_count_is_a_sample_error(biovid: Path, monkeypatch) -> None:
    # a raised error naming the file and the counts, not an assert (gone under python -O)
    from mtpkdot.config import ModalityConfig

    real = kinds.sampled_frames
    monkeypatch.setattr(kinds, "sampled_frames", lambda *a: real(*a)[:-1])
    video = read_manifest(_cfg(biovid))["path_video"][0]
    with pytest.raises(SampleError, match=r"wrong length: .* gave 3 sampled frames, expected 4 \(4 segments"):
        decode_video_for(Path(video), ModalityConfig(**MODALITIES["video"]))


def test_each_kind_has_a_handler() -> None:
    from typing import get_args

    from mtpkdot.config import ModalityConfig

    names = get_args(ModalityConfig.model_fields["kind"].annotation)
    assert set(kinds.KINDS) == set(names)


def test_worker_threads_share_the_cores(biovid: Path, monkeypatch) -> None:
    # one worker lets the decoder and OpenCV use every core; N workers give each cores / N threads
    import cv2

    from mtpkdot.signals import video

    monkeypatch.setattr(workers, "_cpu_count", lambda: 4)
    monkeypatch.setattr(video, "DECODER_THREADS", video.DECODER_THREADS)
    old = cv2.getNumThreads()
    monkeypatch.setattr(video, "DECODER_THREAD_TYPE", video.DECODER_THREAD_TYPE)
    try:
        workers._init_worker()
        assert (video.DECODER_THREADS, cv2.getNumThreads()) == (0, 4)
        workers._init_worker(2)
        assert (video.DECODER_THREADS, cv2.getNumThreads()) == (2, 2)
        # with the overlap, OpenCV runs beside the decoder thread: half the share
        workers._init_worker(0, "SLICE", True)
        assert (video.DECODER_THREADS, cv2.getNumThreads(), video.DECODER_THREAD_TYPE) == (0, 2, "SLICE")
        workers._init_worker(2, "AUTO", True)
        assert (video.DECODER_THREADS, cv2.getNumThreads(), video.DECODER_THREAD_TYPE) == (2, 1, "AUTO")
    finally:
        cv2.setNumThreads(old)
    # a worker overlaps only with two cores or more of its own
    assert [workers._worker_threads(w) for w in (1, 2, 3, 4)] == [0, 2, 1, 1]
    assert [workers._overlaps(w, PrepareOptions()) for w in (1, 2, 3, 4)] == [True, True, False, False]
    assert not workers._overlaps(1, PrepareOptions(overlap=False))


def test_flushing_the_store_counts_as_write(tmp_path: Path, biovid: Path, monkeypatch) -> None:
    # the benchmark's split: time spent syncing the memory-mapped arrays is "write", not "other"
    real_flush = job._flush

    def slow_flush(one) -> None:
        time.sleep(0.05)
        real_flush(one)

    monkeypatch.setattr(job, "_flush", slow_flush)
    options = PrepareOptions()
    prepare(_cfg(biovid), tmp_path / "s", workers=1, progress=False, options=options)
    assert options.stats.seconds["write"] >= 0.05


def test_cli_says_in_one_line_that_no_sample_could_be_prepared(tmp_path: Path, biovid: Path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from mtpkdot.cli import app

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("mtpkdot.signals.physio.emg_spectrogram", broken)
    cfg = tmp_path / "c.yaml"
    data = _cfg(biovid).model_dump(mode="json", exclude_defaults=True)
    cfg.write_text(yaml.safe_dump({"version": 2, "data": data}))
    res = CliRunner().invoke(app, ["prepare", str(cfg), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    assert "error: no sample of biovid" in res.output and "Traceback" not in res.output
