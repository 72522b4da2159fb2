"""The data sections in docs/data.md are valid configs (users copy them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mtpkdot.config import config_from_dict

DOC = Path(__file__).resolve().parents[1] / "docs" / "data.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_an_example_per_dataset() -> None:
    datasets = {yaml.safe_load(b)["data"]["dataset"] for b in BLOCKS}
    assert datasets >= {
        "biovid",
        "biovid_authors",
        "affwild2",
        "own",
        "synthetic_biovid",
        "synthetic_affwild2",
    }


@pytest.mark.parametrize("block", BLOCKS)
def test_doc_example_validates(block: str) -> None:
    cfg = config_from_dict(yaml.safe_load(block), "docs/data.md")
    assert cfg.data.prevalent and set(cfg.data.privileged) <= set(cfg.data.modalities)
