"""The embedded demo: the packaged ``demo.yaml`` with its data and results under one folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from mtpkdot.config import Config, apply_overrides, config_from_dict
from mtpkdot.layout import RunLayout


def demo_yaml() -> str:
    """Text of the demo config shipped in the package (``configs/demo.yaml`` is the same file)."""
    return resources.files("mtpkdot").joinpath("resources/demo.yaml").read_text()


def demo_config(out: str | Path, overrides: list[str] | None = None) -> Config:
    """The demo config with the synthetic data generated into ``<out>/data``."""
    data = yaml.safe_load(demo_yaml())
    data["data"]["root"] = str(RunLayout(Path(out).resolve()).demo_data)
    data = apply_overrides(data, overrides)
    return config_from_dict(data, "demo.yaml")
