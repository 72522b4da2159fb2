"""Benchmark ``prepare`` on a synthetic Biovid set: samples/s with 1 and 2 workers, and peak memory at
two dataset sizes (it must stay flat: nothing holds the whole dataset in RAM).

``--real-size``: a Biovid part-B layout at the real size (1388 x 1038, 25 fps, 5.5 s, H.264) of a real
face photograph moving over a background (``mtpkdot.testing.photo_faces``), prepared as the paper does
(10 frames, Haar face crop, 112 x 112, EDA, EMG spectrogram). It measures in one run: the decode-only
limit (PyAV decoding every frame of the same files, no conversion, best of several thread settings),
the limit for what prepare decodes (only the sampled frames and the frames they need; prepare skips the
rest, so ``ratio_1`` can exceed 1), ``prepare`` with 1 and 2 workers, and the time per sample split
into decode, face detection, crop/resize, physio, write (from the 1-worker run). ``--baseline-src DIR`` also times another source
tree's ``prepare`` (e.g. main's ``src``) on the same files in the same run, for a before/after.

Each measurement runs in a fresh subprocess; peak memory is the larger of that process's and its
worker processes' ``ru_maxrss`` (``resource.getrusage``), which, unlike tracemalloc, sees numpy
buffers and memory-mapped pages.

    python benchmarks/bench_prepare.py --json bench_prepare.json            # 20 subjects (400 samples)
    python benchmarks/bench_prepare.py --subjects 4 --samples-per-class 2   # a tiny check
    python benchmarks/bench_prepare.py --real-size --json benchmarks/results/prepare_real.json
    python benchmarks/bench_prepare.py --real-size --bframes 0 --json benchmarks/results/prepare_real_bframes0.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODALITIES = {
    "video": {"kind": "video", "segments": 8, "size": 112},
    "eda": {"kind": "eda", "column": "gsr", "lowpass_hz": 5.0, "normalize": "baseline"},
    "emg": {"kind": "emg", "column": "emg_corrugator", "window": [2.0, 5.0], "highpass_hz": 20.0},
}


REAL_MODALITIES = {
    "video": {"kind": "video", "segments": 10, "size": 112, "face": "haar"},
    "eda": {"kind": "eda", "column": "gsr", "lowpass_hz": 5.0, "normalize": "baseline"},
    "emg": {"kind": "emg", "column": "emg_corrugator", "window": [2.0, 5.0], "highpass_hz": 20.0},
}
STAGES = ("decode", "face", "crop_resize", "physio", "write")
# stages timed in the main thread of the 1-worker run: with the overlap, "decode" runs in the decode
# thread beside them and the main thread's share of it is "decode_wait"
MAIN_THREAD = ("decode_wait", "face", "crop_resize", "physio", "write")


def _child(root: str, store: str, workers: int, real: bool = False) -> None:
    import resource

    # import the decoders first so that the timing is the work, not the imports (worker start-up, which
    # includes their imports, is part of the 2-worker timing: amortised on real sizes)
    import av  # noqa: F401
    import cv2  # noqa: F401
    import pandas  # noqa: F401
    import scipy.signal  # noqa: F401
    import torch  # noqa: F401  (the store's task description imports it: a one-off 2-4 s)

    import mtpkdot.signals.physio  # noqa: F401
    import mtpkdot.signals.video  # noqa: F401
    from mtpkdot.config import DataConfig

    mods = REAL_MODALITIES if real else MODALITIES
    cfg = DataConfig(dataset="biovid", root=root, modalities=mods, privileged=["eda", "emg"])
    import importlib

    prep = importlib.import_module("mtpkdot.data.prepare")
    # a --baseline-src tree from before PrepareOptions kept the stage times and the decoder setting in
    # module globals of mtpkdot.data.prepare
    options = prep.PrepareOptions() if hasattr(prep, "PrepareOptions") else None
    stats = options.stats if options is not None else None
    kwargs = {} if options is None else {"options": options}

    def cpu() -> float:  # this process (every thread) and its finished worker processes
        return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, who))

    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), cpu()
    s = prep.prepare(cfg, store, workers=workers, progress=False, **kwargs)
    elapsed, cpu_s = time.perf_counter() - t0, cpu() - c0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # filled in this process only (1 worker)
    stages = dict(stats.seconds if stats is not None else getattr(prep, "STAGE_SECONDS", {}))
    # samples/s counts every sample tried (a failed one was decoded too)
    res = {
        "n": len(s) + int(s.meta.get("failed", 0)),
        "kept": len(s),
        "seconds": elapsed,
        "cpu_seconds": cpu_s,
        "decoder": dict(stats.decoder if stats is not None else getattr(prep, "DECODER_SETTING", {})),
        "rss_main_mb": own,
        "rss_workers_mb": kids,
        "stages": stages,
    }
    print(json.dumps(res))


def _measure(root: Path, workers: int, real: bool = False, src: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if src:
            env["PYTHONPATH"] = src
        cmd = [sys.executable, __file__, "--_child", str(root), str(Path(tmp) / "store"), str(workers)]
        if real:
            cmd.append("--real-size")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["workers"] = workers
    res["samples_per_s"] = res["n"] / res["seconds"]
    res["peak_mb"] = max(res["rss_main_mb"], res["rss_workers_mb"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=None, help="default 20 (--real-size: 4)")
    ap.add_argument("--samples-per-class", type=int, default=None, help="default 10 (--real-size: 6)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--real-size", action="store_true", help="Biovid-size face videos (see above)")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="--real-size: where the videos are written (reused when present); default "
        "~/.cache/mtpkdot/bench_real_size (with --bframes N: bench_real_size_bframesN)",
    )
    ap.add_argument(
        "--bframes",
        type=int,
        default=None,
        help="--real-size: x264 B-frames between references (default: the preset's 3; 0: a stream "
        "without B-frames, where prepare has no frame to skip)",
    )
    ap.add_argument("--baseline-src", default=None, help="--real-size: also time this source tree's prepare")
    ap.add_argument("--levers", action="store_true", help="--real-size: also time the video-path levers")
    ap.add_argument(
        "--rounds", type=int, default=3, help="--real-size: interleaved rounds (limit, 1 and 2 workers)"
    )
    ap.add_argument(
        "--table", type=Path, default=None, help="print BENCHMARKS.md's rows from a --real-size JSON"
    )
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        _table(json.loads(args.table.read_text()))
        return
    if args._child:
        _child(args._child[0], args._child[1], int(args._child[2]), args.real_size)
        return
    if args.real_size:
        args.subjects, args.samples_per_class = args.subjects or 4, args.samples_per_class or 6
        _real_size(args)
        return
    args.subjects, args.samples_per_class = args.subjects or 20, args.samples_per_class or 10

    from mtpkdot.config import SynthConfig
    from mtpkdot.data.synthetic import synth_biovid

    results: dict = {"settings": {"modalities": MODALITIES, "subjects": args.subjects}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {"small": max(2, args.subjects // 2), "full": args.subjects}
        roots = {}
        for name, n_subj in sizes.items():
            cfg = SynthConfig(subjects=n_subj, samples_per_class=args.samples_per_class, part="B")
            roots[name] = synth_biovid(Path(tmp) / name, cfg, workers=2)
        for name, workers in (("full", 1), ("full", 2), ("small", 1)):
            r = _measure(roots[name], workers)
            r["dataset"] = name
            results["runs"].append(r)
            print(
                f"{name:>5} set, {r['n']:4d} samples, workers={workers}: {r['samples_per_s']:6.1f} samples/s, "
                f"peak {r['peak_mb']:6.0f} MB (main {r['rss_main_mb']:.0f}, workers {r['rss_workers_mb']:.0f})"
            )
    full1 = next(r for r in results["runs"] if r["dataset"] == "full" and r["workers"] == 1)
    small1 = next(r for r in results["runs"] if r["dataset"] == "small")
    results["peak_ratio_full_vs_small"] = full1["peak_mb"] / small1["peak_mb"]
    print(f"peak memory full / small (workers=1): {results['peak_ratio_full_vs_small']:.2f} (flat = about 1)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


def _decode_all(path: Path, thread_type: str, threads: int) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        stream.codec_context.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def _decode_setting(videos: list[Path]) -> dict:
    """The fastest of a few decoder thread settings (PyAV decoding every frame, no conversion), chosen
    on a subset of the files; the rounds then time every file with it."""
    settings = [("AUTO", 0), ("FRAME", 0), ("SLICE", 0), ("AUTO", 1)]
    subset = videos[: max(4, len(videos) // 4)]
    tried = {}
    for tt, n in settings:
        t0 = time.perf_counter()
        for v in subset:
            _decode_all(v, tt, n)
        tried[f"{tt}/{n}"] = len(subset) / (time.perf_counter() - t0)
    return {"setting": max(tried, key=tried.get), "subset_per_s": tried}


def _decode_pass(videos: list[Path], setting: str) -> float:
    """Videos/s of one pass of PyAV decoding every frame of every file (no conversion)."""
    tt, n = setting.split("/")
    t0 = time.perf_counter()
    for v in videos:
        _decode_all(v, tt, int(n))
    return len(videos) / (time.perf_counter() - t0)


def _decode_sampled_pass(videos: list[Path], setting: str) -> float:
    """Videos/s of one pass decoding only what ``prepare`` decodes: its 10 TSN frames per video, the
    frames nothing needs skipped (``decode_frames``, no conversion), with the limit's thread setting."""
    from mtpkdot.signals import video as V

    tt, n = setting.split("/")
    saved = V.DECODER_THREAD_TYPE, V.DECODER_THREADS
    V.DECODER_THREAD_TYPE, V.DECODER_THREADS = tt, int(n)
    segments = REAL_MODALITIES["video"]["segments"]
    try:
        t0 = time.perf_counter()
        for v in videos:
            V.decode_frames(v, pick=lambda n, fps: V.tsn_indices(n, segments), as_frames=True)
        return len(videos) / (time.perf_counter() - t0)
    finally:
        V.DECODER_THREAD_TYPE, V.DECODER_THREADS = saved


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))


def _rounds(root: Path, videos: list[Path], setting: str, rounds: int) -> list[dict]:
    """``rounds`` x (decode-only pass, prepare with 1 worker, prepare with 2 workers), the order reversed
    every other round: a background load that changes during the run hits each measurement alike."""
    steps = {
        "limit": lambda: {"per_s": _decode_pass(videos, setting)},
        "limit_sampled": lambda: {"per_s": _decode_sampled_pass(videos, setting)},
        "prepare_1": lambda: _measure(root, 1, real=True),
        "prepare_2": lambda: _measure(root, 2, real=True),
    }
    out = []
    for k in range(rounds):
        rnd = {"load_start": os.getloadavg()[0]}
        for name in list(steps) if k % 2 == 0 else list(steps)[::-1]:
            rnd[name] = steps[name]()
        rnd["load_end"] = os.getloadavg()[0]
        rnd["ratio_1"] = rnd["prepare_1"]["samples_per_s"] / rnd["limit"]["per_s"]
        rnd["ratio_1_sampled"] = rnd["prepare_1"]["samples_per_s"] / rnd["limit_sampled"]["per_s"]
        rnd["speedup_2_vs_1"] = rnd["prepare_2"]["samples_per_s"] / rnd["prepare_1"]["samples_per_s"]
        print(
            f"round {k + 1}: limit {rnd['limit']['per_s']:.2f} videos/s (sampled frames only "
            f"{rnd['limit_sampled']['per_s']:.2f}), prepare 1 worker "
            f"{rnd['prepare_1']['samples_per_s']:.2f}, 2 workers {rnd['prepare_2']['samples_per_s']:.2f} "
            f"samples/s, ratio_1 {rnd['ratio_1']:.2f} (to the sampled-frames limit "
            f"{rnd['ratio_1_sampled']:.2f}; load {rnd['load_start']:.1f} -> {rnd['load_end']:.1f})"
        )
        out.append(rnd)
    return out


def _real_size(args: argparse.Namespace) -> None:
    from mtpkdot.testing.photo_faces import make_photo_biovid

    load_start = os.getloadavg()
    t0 = time.perf_counter()
    # every 6th sample has the upper face covered on the first probe frames (more probes find it)
    cache = Path.home() / ".cache" / "mtpkdot"
    data = args.data or cache / (
        "bench_real_size" + ("" if args.bframes is None else f"_bframes{args.bframes}")
    )
    root = make_photo_biovid(
        data, args.subjects, args.samples_per_class, partly_every=6, bframes=args.bframes
    )
    videos = sorted(root.glob("video/*/*.mp4"))
    print(
        f"{len(videos)} videos at 1388 x 1038 in {root} ({time.perf_counter() - t0:.0f} s to write or find)"
    )
    best = _decode_setting(videos)
    print(
        f"decoder setting for the limit: {best['setting']} (subset: "
        + ", ".join(f"{k} {v:.2f}" for k, v in best["subset_per_s"].items())
        + " videos/s)"
    )
    rounds = _rounds(root, videos, best["setting"], args.rounds)
    runs = {w: [r[f"prepare_{w}"] for r in rounds] for w in (1, 2)}
    n = runs[1][0]["n"]
    split = _split(runs[1], n)
    print("per sample (1 worker): " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in split.items()))
    res = {
        "settings": {
            "modalities": REAL_MODALITIES,
            "videos": len(videos),
            "size": [1388, 1038],
            "fps": 25,
            "seconds": 5.5,
            "codec": "H.264 (libx264 superfast, crf 23"
            + ("" if args.bframes is None else f", bframes {args.bframes}")
            + ")",
            "rounds": args.rounds,
            "cpus": len(os.sched_getaffinity(0)),
        },
        "load_average_start": list(load_start),
        "decode_limit_per_s": _median([r["limit"]["per_s"] for r in rounds]),
        "decode_limit_setting": best["setting"],
        # decoding only the frames prepare decodes (sampled ones, and the references they need)
        "decode_sampled_limit_per_s": _median([r["limit_sampled"]["per_s"] for r in rounds]),
        "decode_limit_subset_per_s": best["subset_per_s"],
        # prepare's own decoder setting (thread type / threads per worker, "0": FFmpeg's choice), as the
        # runs logged it: the thread type comes from prepare's probe, and whether it decodes ahead
        "prepare_decoder_setting": {str(w): sorted({_setting(r) for r in rs}) for w, rs in runs.items()},
        "prepare_overlap": {
            str(w): sorted({r["decoder"].get("overlap", False) for r in rs}) for w, rs in runs.items()
        },
        "prepare_cpu_ms_per_sample": {
            str(w): _median([1000 * r["cpu_seconds"] / n for r in rs]) for w, rs in runs.items()
        },
        "prepare_per_s_1": _median([r["samples_per_s"] for r in runs[1]]),
        "prepare_per_s_2": _median([r["samples_per_s"] for r in runs[2]]),
        "ratio_1": _median([r["ratio_1"] for r in rounds]),
        "ratio_1_sampled": _median([r["ratio_1_sampled"] for r in rounds]),
        "speedup_2_vs_1": _median([r["speedup_2_vs_1"] for r in rounds]),
        "split": split,
        "peak_mb": {w: max(r["peak_mb"] for r in rs) for w, rs in runs.items()},
        "rounds": rounds,
    }
    if args.levers:
        res["pipeline_levers_ms_per_sample"] = _pipeline_levers(root, 12)
        res["levers_ms_per_sample"] = _levers(videos[:12])
        res["face_levers_ms_per_sample"] = _face_levers(videos[:12])
    if args.baseline_src:
        base = {w: _measure(root, w, real=True, src=args.baseline_src) for w in (1, 2)}
        res["baseline"] = {
            "src": _commit_of(args.baseline_src),
            **{f"prepare_per_s_{w}": r["samples_per_s"] for w, r in base.items()},
        }
        print(
            f"baseline {res['baseline']['src']}: "
            + ", ".join(f"{w} worker(s) {r['samples_per_s']:.2f} samples/s" for w, r in base.items())
        )
    res["load_average_end"] = list(os.getloadavg())
    print(
        f"ratio_1 = {res['ratio_1']:.2f} (median of {args.rounds} rounds; target >= 0.8); "
        f"2 workers / 1 worker = {res['speedup_2_vs_1']:.2f}; load average "
        f"{load_start[0]:.1f} -> {res['load_average_end'][0]:.1f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


def _commit_of(src: str) -> str:
    """The commit of the git checkout holding ``src`` (the JSON names no folder of this machine), or
    ``src`` as given outside git."""
    out = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else src


def _setting(run: dict) -> str:
    d = run["decoder"]
    return f"{d.get('thread_type', 'AUTO')}/{d.get('threads', 0)}"


def _split(runs: list[dict], n: int) -> dict:
    """Seconds per sample by stage, the median over the rounds of the 1-worker runs. ``other`` is the
    wall time not in a main-thread stage (per round, then the median); with the overlap, ``decode`` ran
    in the decode thread beside the main thread (not part of the wall-time sum) and ``decode_wait`` is
    the main thread waiting for it."""
    split = {k: _median([r["stages"].get(k, 0.0) / n for r in runs]) for k in (*STAGES, "decode_wait")}

    def other(r: dict) -> float:
        in_main = MAIN_THREAD if r["decoder"].get("overlap", False) else ("decode", *MAIN_THREAD)
        return (r["seconds"] - sum(r["stages"].get(k, 0.0) for k in in_main)) / n

    split["other"] = _median([other(r) for r in runs])
    split["wall"] = _median([r["seconds"] / n for r in runs])
    return split


def _pipeline_levers(root: Path, n: int) -> dict:
    """prepare's per-sample pipeline (1 worker, no store) on the first ``n`` samples with each decoder
    thread type, sequential and overlapped, interleaved in one process (the order reversed every other
    round), best of 3: wall and CPU (all threads) ms per sample and the stage times. Results must be
    identical."""
    import cv2

    from mtpkdot.config import DataConfig
    from mtpkdot.data.manifest import read_manifest
    from mtpkdot.data.prepare import PrepareOptions
    from mtpkdot.data.prepare.workers import results
    from mtpkdot.signals import video

    cfg = DataConfig(dataset="biovid", root=root, modalities=REAL_MODALITIES, privileged=["eda", "emg"])
    items = list(enumerate(read_manifest(cfg).to_dict("records")[:n]))
    # results sets these in this process (as in a 1-worker prepare): restored for the levers after it
    old_state = video.DECODER_THREAD_TYPE, video.DECODER_THREADS, cv2.getNumThreads()
    variants = {
        "AUTO, sequential (before)": ("AUTO", False),
        "SLICE, sequential": ("SLICE", False),
        "AUTO, overlap": ("AUTO", True),
        "SLICE, overlap": ("SLICE", True),
    }
    best = {k: {"wall_ms": 1e9, "cpu_ms": 1e9} for k in variants}
    ref = None
    try:
        for k in range(3):
            for name in list(variants) if k % 2 == 0 else list(variants)[::-1]:
                thread_type, overlap = variants[name]
                options = PrepareOptions(overlap=overlap)
                w0, c0 = time.perf_counter(), time.process_time()
                outs = [
                    (i, code, res) for i, res, _, code in results(items, cfg, False, 1, options, thread_type)
                ]
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if 1000 * wall / n < best[name]["wall_ms"]:  # the stages of the fastest round
                    best[name]["stages_ms"] = {s: 1000 * v / n for s, v in options.stats.seconds.items()}
                best[name]["wall_ms"] = min(best[name]["wall_ms"], 1000 * wall / n)
                best[name]["cpu_ms"] = min(best[name]["cpu_ms"], 1000 * cpu / n)
                ref = outs if ref is None else ref
                assert _same_results(ref, outs), f"{name} changed a result"
    finally:
        video.DECODER_THREAD_TYPE, video.DECODER_THREADS = old_state[:2]
        cv2.setNumThreads(old_state[2])
    for name, b in best.items():
        print(f"pipeline lever: {b['wall_ms']:6.1f} ms wall, {b['cpu_ms']:6.1f} ms CPU per sample  {name}")
    return best


def _same_results(a: list, b: list) -> bool:
    import numpy as np

    def same(x: dict | None, y: dict | None) -> bool:
        if x is None or y is None:
            return x is y
        return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)

    return len(a) == len(b) and all(
        i == j and c == d and same(x, y) for (i, c, x), (j, d, y) in zip(a, b, strict=True)
    )


def _levers(videos: list[Path]) -> dict:
    """The video path (decode 10 frames, Haar crop, resize) with and without each lever, interleaved in
    one process (same load), best of 3 rounds: wall and CPU ms per sample. Outputs must be identical."""
    import av
    import numpy as np

    from mtpkdot.signals import video as V

    det = V.get_face_detector("haar")

    def before(p: Path) -> np.ndarray:  # the previous code: headers read by a second open, every
        n, _ = V.video_info(p)  # sampled frame converted to RGB inside the decode loop
        idx = V.tsn_indices(n, 10)
        got = {}
        with av.open(str(p)) as c:
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            for i, f in enumerate(c.decode(st)):
                if i in set(idx.tolist()):
                    got[i] = f.to_ndarray(format="rgb24")
                if i >= idx.max():
                    break
        return V.resize_frames(V.crop_face(np.stack([got[int(i)] for i in idx]), det), 112)

    def eager(p: Path) -> np.ndarray:
        frames, _ = V.decode_frames(p, pick=lambda n, fps: V.tsn_indices(n, 10))
        return V.resize_frames(V.crop_face(frames, det), 112)

    def lazy(p: Path) -> np.ndarray:
        frames, _ = V.decode_frames(p, pick=lambda n, fps: V.tsn_indices(n, 10), as_frames=True)
        return V.resize_frames(V.crop_face(frames, det), 112)

    variants = {
        "before: two opens, RGB in the loop": before,
        "one open, RGB after (reused scaler)": eager,
        "one open, RGB of probes and crop only (kept)": lazy,
    }
    for threads in (1, 2):
        variants[f"kept, decoder threads {threads}"] = functools.partial(_with_threads, lazy, threads)
    best: dict[str, list[float]] = {k: [1e9, 1e9] for k in variants}
    ref = None
    for _ in range(3):
        for name, fn in variants.items():
            w0, c0 = time.perf_counter(), time.process_time()
            outs = [_or_none(fn, v) for v in videos]
            wall, cpu = (time.perf_counter() - w0) / len(videos), (time.process_time() - c0) / len(videos)
            best[name] = [min(best[name][0], 1000 * wall), min(best[name][1], 1000 * cpu)]
            ref = outs if ref is None else ref
            assert all(
                (a is None) == (b is None) and (a is None or np.array_equal(a, b))
                for a, b in zip(ref, outs, strict=True)
            )
    for name, (wall, cpu) in best.items():
        print(f"lever: {wall:6.1f} ms wall, {cpu:6.1f} ms CPU per sample  {name}")
    return {name: {"wall_ms": w, "cpu_ms": c} for name, (w, c) in best.items()}


def _face_levers(videos: list[Path]) -> dict:
    """The face stage alone (probe frames -> face box) on frames decoded beforehand, with and without each
    lever, interleaved in one process, best of 3 rounds: wall and CPU ms per sample. Tried and not kept:
    probe frames shrunk by swscale before the detector (no full-size RGB); it moves the boxes a little,
    and the largest change of a crop square (pixels) and the samples whose face is found by one only are
    reported."""
    import cv2
    import numpy as np

    from mtpkdot.signals import NoFaceError
    from mtpkdot.signals import video as V

    det = V.get_face_detector("haar")
    clips = [V.decode_frames(v, pick=lambda n, fps: V.tsn_indices(n, 10), as_frames=True)[0] for v in videos]

    def probe_box(frames: list, detect) -> tuple | None:  # face_box's probe rule with any frame detector
        probes = np.unique(np.linspace(0, len(frames) - 1, num=3).round().astype(int))
        rest = [i for i in range(len(frames)) if i not in set(probes.tolist())]
        for picks, needed in ((probes, 1), (rest, 2)):
            found = [detect(frames[i]) for i in picks]
            boxes = [max(f, key=lambda b: b[2] * b[3]) for f in found if len(f)]
            if len(boxes) >= needed:
                return tuple(np.median(np.asarray(boxes, dtype=float), axis=0))
        return None

    def shrunk_detect(frame) -> list:
        w, h = 320, int(round(frame.height * 320 / frame.width))
        rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
        return [tuple(v * frame.width / w for v in b) for b in det(rgb)]

    def kept(frames: list) -> tuple | None:
        try:
            return V.face_box(frames, det)
        except NoFaceError:
            return None

    cores = len(os.sched_getaffinity(0))
    variants = {
        "face_box (kept), OpenCV 1 thread": (kept, 1),
        f"face_box (kept), OpenCV {cores} threads (1 worker on {cores} cores)": (kept, cores),
        "probe frames shrunk by swscale (not kept), OpenCV 1 thread": (
            functools.partial(probe_box, detect=shrunk_detect),
            1,
        ),
    }
    best = {k: [1e9, 1e9] for k in variants}
    boxes: dict[str, list] = {}
    for _ in range(3):
        for name, (fn, threads) in variants.items():
            cv2.setNumThreads(threads)
            w0, c0 = time.perf_counter(), time.process_time()
            boxes[name] = [fn(c) for c in clips]
            wall, cpu = (time.perf_counter() - w0) / len(clips), (time.process_time() - c0) / len(clips)
            best[name] = [min(best[name][0], 1000 * wall), min(best[name][1], 1000 * cpu)]
    cv2.setNumThreads(cores)
    names = list(variants)
    assert boxes[names[0]] == boxes[names[1]], "OpenCV threads changed a face box"
    old, new = boxes[names[0]], boxes[names[2]]
    one_only = sum((o is None) != (n is None) for o, n in zip(old, new, strict=True))
    squares = [
        (V.crop_square(o, 1038, 1388), V.crop_square(n, 1038, 1388))
        for o, n in zip(old, new, strict=True)
        if o is not None and n is not None
    ]
    diff = max((max(abs(a - b) for a, b in zip(*sq, strict=True)) for sq in squares), default=0)
    for name, (wall, cpu) in best.items():
        print(f"face lever: {wall:6.1f} ms wall, {cpu:6.1f} ms CPU per sample  {name}")
    print(f"face lever: shrunk probe frames move crop squares by up to {diff} px; {one_only} samples differ")
    out = {name: {"wall_ms": w, "cpu_ms": c} for name, (w, c) in best.items()}
    return {**out, "shrunk_max_crop_change_px": diff, "shrunk_samples_found_by_one_only": one_only}


def _with_threads(fn, threads: int, path: Path):
    from mtpkdot.signals import video as V

    old, V.DECODER_THREADS = V.DECODER_THREADS, threads
    try:
        return fn(path)
    finally:
        V.DECODER_THREADS = old


def _or_none(fn, path: Path):
    from mtpkdot.signals import SampleError

    try:
        return fn(path)
    except SampleError:
        return None


# Full Biovid part B run (BENCHMARKS.md). Measured inputs: the JSON of --real-size and
# benchmarks/results/{models,student}.json. ASSUMED (no GPU measured yet): the GPU rates below.
PART_B = {"samples": 8600, "bl1_pa4_share": 0.4, "folds": 5, "seeds": 3, "train_share": 0.8 * 0.8}
ASSUMED_GPU = {"r3d_18_train_clips_s": 1000.0, "r3d_18_eval_clips_s": 3000.0, "spec_train_clips_s": 5000.0}


def _estimate(res: dict) -> dict:
    n = PART_B["samples"] * PART_B["bl1_pa4_share"]
    train = n * PART_B["train_share"]
    val = n * 0.8 * 0.2
    runs = PART_B["folds"] * PART_B["seeds"]
    # prepare: 16 workers with one decoder thread each ~ 8 x the 2-worker rate here (assumes linear scaling)
    prepare_s = n / (8 * res["prepare_per_s_2"])
    video_s = 30 * (train / ASSUMED_GPU["r3d_18_train_clips_s"] + val / ASSUMED_GPU["r3d_18_eval_clips_s"])
    emg_s = 30 * train / ASSUMED_GPU["spec_train_clips_s"]
    features_s = n / ASSUMED_GPU["r3d_18_eval_clips_s"]
    student = json.loads((Path(__file__).parent / "results" / "student.json").read_text())
    step_s = student["cached_step_s"]  # measured on the CPU here: an upper bound on a GPU
    students_s = 6 * 30 * -(-train // 128) * step_s
    per_run = {
        "video backbone (r3d_18)": video_s,
        "EMG backbone": emg_s,
        "feature cache": features_s,
        "six students (CPU-measured step)": students_s,
    }
    total = prepare_s + runs * sum(per_run.values())
    return {"samples": n, "prepare_s": prepare_s, "per_run_s": per_run, "runs": runs, "total_s": total}


def _table(res: dict) -> None:
    sp = res["split"]
    print(
        "| decode-only limit | sampled frames only | prepare, 1 worker | prepare, 2 workers | ratio_1 | "
        "prepare / sampled | 2 workers / 1 |"
    )
    print("|---|---|---|---|---|---|---|")
    sampled = res.get("decode_sampled_limit_per_s", float("nan"))
    print(
        f"| {res['decode_limit_per_s']:.2f} videos/s ({res['decode_limit_setting']}) | {sampled:.2f} videos/s | "
        f"{res['prepare_per_s_1']:.2f} samples/s | {res['prepare_per_s_2']:.2f} samples/s | "
        f"{res['ratio_1']:.2f} | {res.get('ratio_1_sampled', float('nan')):.2f} | {res['speedup_2_vs_1']:.2f} |"
    )
    if "prepare_decoder_setting" in res and isinstance(res["prepare_decoder_setting"]["1"], list):
        dec, ov = res["prepare_decoder_setting"], res["prepare_overlap"]
        cpu = res["prepare_cpu_ms_per_sample"]
        print(
            "\nprepare's decoder (thread type/threads per worker, 0: FFmpeg's choice; from its probe): "
            + "; ".join(
                f"{w} worker(s) {', '.join(dec[w])}{' with the next video decoded ahead' if any(ov[w]) else ''}"
                f", {cpu[w]:.0f} ms CPU per sample"
                for w in dec
            )
            + "."
        )
    if "baseline" in res:
        b = res["baseline"]
        print(
            f"\nSame run, previous code ({b['src']}): {b['prepare_per_s_1']:.2f} samples/s with 1 worker, "
            f"{b['prepare_per_s_2']:.2f} with 2."
        )
    print("\n| per sample (1 worker) | " + " | ".join(sp) + " |")
    print("|---" * (len(sp) + 1) + "|")
    print("| ms | " + " | ".join(f"{1000 * v:.0f}" for v in sp.values()) + " |")
    est = _estimate(res)
    print(
        f"\nEstimate: {est['samples']:.0f} samples; prepare {est['prepare_s'] / 60:.1f} min on 16 cores; per "
        "(seed, fold): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in est["per_run_s"].items())
        + f"; total {est['total_s'] / 3600:.1f} h for {est['runs']} runs"
    )


if __name__ == "__main__":
    main()
