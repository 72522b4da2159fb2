"""The report's "Data" line: the samples prepare kept, and those it dropped grouped by reason."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from fakerun import make_fake_run
from mtpkdot.layout import RunLayout
from mtpkdot.report import write_report
from mtpkdot.report.prepared import reason_kind

FALLBACK = "face: subject fallback"


def _prepare_report(folder, rows) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["sample_id", "subject_id", "status", "reason"])
    frame.to_csv(folder / "prepare_report.csv", index=False)


def _rows() -> list[tuple[str, str, str, str]]:
    rows = [(f"s{i}_{j}", f"s{i}", "ok", "") for i in range(3) for j in range(3)]
    rows[4] = ("s1_1", "s1", "ok", FALLBACK)
    rows += [
        ("s3_0", "s3", "failed", "video file /data/videos/s3_0.mp4 does not exist"),
        ("s3_1", "s3", "failed", "video file /data/videos/s3_1.mp4 does not exist"),
        ("s4_0", "s4", "failed", "NaN values in modality 'eda' of /data/bio/s4_0.csv"),
        ("s4_1", "s4", "failed", "ValueError: bad header (sample s4_1)"),
    ]
    return rows


def _data_line(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("- **Data:**"))


def test_reasons_are_grouped_without_their_file_names_and_ids():
    assert reason_kind("video file /data/v/s3_0.mp4 does not exist") == "video file … does not exist"
    assert (
        reason_kind("cannot read s3_0.npy (not a valid .npy file: x)")
        == "cannot read … (not a valid .npy file: x)"
    )
    assert reason_kind("ValueError: bad (sample s4_1)", "s4_1") == "ValueError: bad (sample …)"
    assert (
        reason_kind(
            "no face; no sample of subject 071309_w_21 has a detected face",
            "071309_w_21-PA4-003",
            "071309_w_21",
        )
        == "no face; no sample of subject … has a detected face"
    )


def test_data_line_counts_and_groups_the_dropped_samples(tmp_path):
    path = make_fake_run(tmp_path / "exp", seeds=(0,), folds=2, fold_dirs=False)
    _prepare_report(RunLayout(path).store(None), _rows())
    write_report(path)
    md = (path / "report.md").read_text()
    line = _data_line(md)
    assert line == (
        "- **Data:** 13 samples in the manifest, 9 prepared, 4 dropped: "
        "2 × video file … does not exist (`s3_0`, `s3_1`); "
        "1 × NaN values in modality 'eda' of … (`s4_0`); "
        "1 × ValueError: bad header (sample …) (`s4_1`); "
        f"kept with a note: 1 × {FALLBACK} (`s1_1`) (from `store/prepare_report.csv`)"
    )
    assert md.index("**Data:**") < md.index("## Results")  # near the top
    assert "4 dropped: 2 × video file … does not exist" in (path / "report.html").read_text()


def test_data_line_reads_the_store_the_config_names(tmp_path):
    path = make_fake_run(tmp_path / "exp", seeds=(0,), folds=2, fold_dirs=False)
    store = tmp_path / "shared_store"
    _prepare_report(store, _rows()[:9])
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["data"]["store"] = str(store)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_report(path)
    assert "9 samples in the manifest, 9 prepared, 0 dropped" in _data_line((path / "report.md").read_text())


def test_data_line_falls_back_to_the_counts_of_store_meta(tmp_path):
    path = make_fake_run(tmp_path / "exp", seeds=(0,), folds=2, fold_dirs=False)
    RunLayout(path).store_meta.write_text(json.dumps({"n": 318, "failed": 2}))
    write_report(path)
    line = _data_line((path / "report.md").read_text())
    assert line.startswith("- **Data:** 320 samples in the manifest, 318 prepared, 2 dropped (the reasons")
    assert "no readable prepare_report.csv in `store`" in line
    RunLayout(path).store_meta.unlink()
    write_report(path)
    assert "not recorded" in _data_line((path / "report.md").read_text())
