"""A damaged store is never "up to date": a truncated array is rebuilt or named, a changed byte is found
by ``--verify``, and stores made before the checksums are still checked."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import invoke
from mtpkdot.config import DataConfig, SynthConfig
from mtpkdot.data import Store, prepare
from mtpkdot.data.synthetic import synth_biovid

MODALITIES = {"video": {"kind": "video", "segments": 2, "size": 8}, "eda": {"kind": "eda"}}


@pytest.fixture(scope="module")
def biovid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_biovid(
        tmp_path_factory.mktemp("i") / "b", SynthConfig(subjects=2, samples_per_class=2, size=16)
    )


@pytest.fixture(scope="module")
def reference(biovid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(_cfg(biovid), tmp_path_factory.mktemp("ref") / "s", progress=False).path


def _cfg(root: Path) -> DataConfig:
    return DataConfig(dataset="biovid", root=root, modalities=MODALITIES, privileged=["eda"])


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _flip_last_byte(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(-1, 2)
        byte = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _same_as(store: Store, reference: Path) -> None:
    ref = Store(reference)
    for name in ("video", "eda"):
        np.testing.assert_array_equal(store.array(name), ref.array(name))
    np.testing.assert_array_equal(store.labels, ref.labels)


def test_a_truncated_array_is_rebuilt(tmp_path: Path, biovid: Path, reference: Path, caplog) -> None:
    shutil.copytree(reference, tmp_path / "s")
    _truncate(tmp_path / "s" / "video.npy")
    size = (tmp_path / "s" / "video.npy").stat().st_size
    with caplog.at_level(logging.WARNING, logger="mtpkdot.data.prepare"):
        store = prepare(_cfg(biovid), tmp_path / "s", progress=False)
    # the size recorded when it was written says what is wrong
    assert f"video.npy: it has {size} bytes, {2 * size} were written" in caplog.text
    assert "rebuilding" in caplog.text
    _same_as(store, reference)


def test_a_truncated_array_without_its_data_is_named(tmp_path: Path, biovid: Path, reference: Path) -> None:
    shutil.copytree(reference, tmp_path / "s")
    eda = tmp_path / "s" / "eda.npy"
    _truncate(eda)
    # read directly, the array names its file (numpy's "mmap length is greater than file size" does not)
    with pytest.raises(ValueError, match="cannot be read") as exc:
        Store(tmp_path / "s").array("eda")
    assert str(eda) in str(exc.value)
    # one video of the data it was made from is gone: the damage is named and the store left as it is
    victim = next(biovid.rglob("*.mp4"))
    moved = shutil.move(victim, tmp_path / victim.name)
    try:
        with pytest.raises(ValueError) as exc:
            prepare(_cfg(biovid), tmp_path / "s", progress=False)
    finally:
        shutil.move(moved, victim)
    message = str(exc.value)
    assert str(eda) in message and str(victim) in message and "cannot be rebuilt" in message
    assert (tmp_path / "s" / "done").is_file()


def test_a_changed_byte_is_found_by_verify(tmp_path: Path, biovid: Path, reference: Path, caplog) -> None:
    shutil.copytree(reference, tmp_path / "run" / "store")
    eda = tmp_path / "run" / "store" / "eda.npy"
    _flip_last_byte(eda)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"data": _cfg(biovid).model_dump(mode="json")}))
    prepare_cmd = ["prepare", str(config), "--out", str(tmp_path / "run")]
    caplog.set_level(logging.INFO, logger="mtpkdot.data.prepare")
    # the cheap check (sizes) cannot see it ...
    invoke(prepare_cmd)
    assert "up to date" in caplog.text and "damaged" not in caplog.text
    # ... --verify does, names the file and rebuilds it
    caplog.clear()
    invoke([*prepare_cmd, "--verify"])
    assert str(eda) in caplog.text and "SHA-256" in caplog.text and "rebuilding" in caplog.text
    _same_as(Store(eda.parent), reference)
    caplog.clear()
    invoke([*prepare_cmd, "--verify"])
    assert "up to date" in caplog.text and "damaged" not in caplog.text


def test_a_store_without_records_is_still_checked(
    tmp_path: Path, biovid: Path, reference: Path, caplog
) -> None:
    shutil.copytree(reference, tmp_path / "s")
    meta_path = tmp_path / "s" / "meta.json"
    meta = json.loads(meta_path.read_text())
    records = meta.pop("arrays")
    meta_path.write_text(json.dumps(meta, indent=1))
    # --verify of an intact store made before the records records them (nothing rebuilt)
    with caplog.at_level(logging.INFO, logger="mtpkdot.data.prepare"):
        prepare(_cfg(biovid), tmp_path / "s", progress=True, verify=True)
    assert "rebuilding" not in caplog.text
    assert json.loads(meta_path.read_text())["arrays"] == records
    # a truncated array is found from the shapes and the .npy header alone
    meta_path.write_text(json.dumps(meta, indent=1))
    _truncate(tmp_path / "s" / "video.npy")
    assert "needs" in Store(tmp_path / "s").damage()["video"]
    _same_as(prepare(_cfg(biovid), tmp_path / "s", progress=False), reference)
